"""Optimizer from the config: AdamW, warm-up + cosine, clipping, freezing and lr multipliers.

Config keys read (under `config`):
  lr                   peak learning rate.
  wd                   decoupled weight decay (AdamW), scaled by the learning rate as in optax.
  wd_mask              regexes of the parameter paths that decay (default: kernels only).
  optax                dict(b1=, b2=, eps=) for Adam.
  schedule             dict(warmup_steps=, decay_type='cosine'|'constant', end_lr_ratio=).
  grad_clip_norm       global-norm clipping (0 disables).
  frozen               regexes of parameter paths that never change (no optimizer state either).
  lr_mults             [(regex, multiplier)]; first match wins, unmatched paths get 1.0.
  grad_accum_steps     microbatches per step (gradients averaged; see `accumulate_gradients`).

Regexes are matched with re.fullmatch against '/'-joined parameter paths such as
`encoder/Transformer/encoderblock_0/MlpBlock_0/Dense_0/kernel`.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import optax

from locvqa_jax import sharding


def _first_match(path: str, rules: Sequence[tuple[str, Any]], default: Any) -> Any:
  for pattern, value in rules:
    if re.fullmatch(pattern, path):
      return value
  return default


def frozen_mask(params: Any, patterns: Sequence[str]) -> Any:
  """True on leaves whose path fully matches one of `patterns`."""
  return jax.tree.map(lambda p: any(re.fullmatch(r, p) for r in patterns),
                      sharding.tree_paths(params))


def lr_mult_tree(params: Any, rules: Sequence[tuple[str, float]]) -> Any:
  """The learning-rate multiplier of each leaf."""
  return jax.tree.map(lambda p: float(_first_match(p, rules, 1.0)), sharding.tree_paths(params))


def make_schedule(config: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """Linear warm-up from 0 to config.lr, then cosine (or constant) to lr * end_lr_ratio."""
  sched = config.schedule
  warmup = min(int(sched.warmup_steps), max(total_steps - 1, 0))
  if sched.decay_type == "cosine":
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=config.lr, warmup_steps=warmup,
        decay_steps=max(total_steps, warmup + 1), end_value=config.lr * sched.end_lr_ratio)
  if sched.decay_type == "constant":
    return optax.join_schedules(
        [optax.linear_schedule(0.0, config.lr, max(warmup, 1)), optax.constant_schedule(config.lr)],
        [warmup])
  raise ValueError(f"config.schedule.decay_type={sched.decay_type!r}; expected 'cosine' or "
                   "'constant'")


def make_optimizer(config: ml_collections.ConfigDict, params: Any,
                   total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Builds the optax transformation for `params` (arrays or shapes).

  Frozen leaves get zero updates and carry no Adam moments; every other leaf is updated by
  AdamW with the schedule times its multiplier.

  Returns:
    (optimizer, schedule) where schedule(step) is the base learning rate, for logging.
  """
  schedule = make_schedule(config, total_steps)
  paths = sharding.tree_paths(params)
  frozen = frozen_mask(params, config.frozen)
  mults = lr_mult_tree(params, config.lr_mults)
  if all(jax.tree.leaves(frozen)):
    raise ValueError(f"config.frozen={list(config.frozen)} freezes every parameter")

  def label(path, is_frozen, mult):
    del path
    return "frozen" if is_frozen else f"lr_x{mult!r}"

  labels = jax.tree.map(label, paths, frozen, mults)
  decay_mask = jax.tree.map(lambda p: any(re.fullmatch(r, p) for r in config.wd_mask), paths)

  def adamw(mult: float) -> optax.GradientTransformation:
    return optax.chain(
        optax.scale_by_adam(b1=config.optax.b1, b2=config.optax.b2, eps=config.optax.eps),
        optax.add_decayed_weights(config.wd, mask=decay_mask),
        optax.scale_by_learning_rate(lambda step: schedule(step) * mult))

  transforms = {"frozen": optax.set_to_zero()}
  for mult in sorted(set(jax.tree.leaves(mults))):
    transforms[f"lr_x{mult!r}"] = adamw(mult)
  parts = [optax.masked(optax.set_to_zero(), frozen)]  # Frozen grads must not count in the norm.
  if config.grad_clip_norm:
    parts.append(optax.clip_by_global_norm(config.grad_clip_norm))
  parts.append(optax.multi_transform(transforms, labels))
  return optax.chain(*parts), schedule


def accumulate_gradients(grad_fn: Callable[..., tuple[Any, Any]], params: Any,
                         batch: dict[str, jax.Array], rng: jax.Array,
                         steps: int) -> tuple[Any, Any]:
  """Averages `grad_fn` over `steps` equal microbatches of `batch`, one at a time.

  Peak activation memory is that of one microbatch, which is what makes So400m at 448 fit.

  Args:
    grad_fn: (params, batch, rng) -> (grads, aux) with aux a tree of per-microbatch sums.
    batch: leaves [B, ...] with B divisible by steps.
    steps: number of microbatches (1: a single call).

  Returns:
    (mean grads, summed aux).
  """
  if steps == 1:
    return grad_fn(params, batch, rng)
  size = jax.tree.leaves(batch)[0].shape[0]
  if size % steps:
    raise ValueError(f"batch of {size} does not split into config.grad_accum_steps={steps}")
  micro = jax.tree.map(lambda x: x.reshape((steps, size // steps) + x.shape[1:]), batch)
  rngs = jax.random.split(rng, steps)

  def body(carry, xs):
    grads_sum, aux_sum = carry
    mb, r = xs
    grads, aux = grad_fn(params, mb, r)
    return (jax.tree.map(jnp.add, grads_sum, grads), jax.tree.map(jnp.add, aux_sum, aux)), None

  first_mb = jax.tree.map(lambda x: x[0], micro)
  grads_shape, aux_shape = jax.eval_shape(grad_fn, params, first_mb, rngs[0])
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (grads_shape, aux_shape))
  (grads, aux), _ = jax.lax.scan(body, zeros, (micro, rngs))
  return jax.tree.map(lambda g: g / steps, grads), aux
