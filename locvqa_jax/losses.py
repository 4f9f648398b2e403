"""Training losses, looked up by name from `config.loss.name`.

A loss is `fn(model, module, params, batch, rng, config, train) -> (loss, aux)` where `model` is
the flax module instance, `module` the Python module it came from (for model-specific helpers
such as `parallel_prediction_inputs`), `loss` a scalar to minimise and `aux` a dict of sums that
the trainer may add over microbatches and hosts (`loss_sum_per_task` [T], `count_per_task` [T]).
Stage 2 adds its loss here under a new name; the trainer is not edited.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

PAD_ID = 0  # CONTRACTS C.
NUM_LOC_BINS = 1024  # <loc0000> .. <loc1023> (CONTRACTS C).
LossFn = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]
_REGISTRY: dict[str, LossFn] = {}


def register(name: str) -> Callable[[LossFn], LossFn]:
  def deco(fn: LossFn) -> LossFn:
    _REGISTRY[name] = fn
    return fn
  return deco


def get(name: str) -> LossFn:
  if name not in _REGISTRY:
    raise KeyError(f"config.loss.name={name!r} is not a registered loss; known: "
                   f"{sorted(_REGISTRY)} (locvqa_jax/losses.py)")
  return _REGISTRY[name]


def weighted_token_xent(logits: jax.Array, targets: jax.Array, weights: jax.Array) -> jax.Array:
  """Per-example mean cross-entropy over the weighted tokens.

  Args:
    logits: [B, L, V] any float dtype (computed in float32).
    targets: [B, L] int32.
    weights: [B, L] 0/1.

  Returns:
    [B] float32; 0 for examples without a weighted token.
  """
  xent = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
  weights = weights.astype(jnp.float32)
  return (xent * weights).sum(-1) / jnp.maximum(weights.sum(-1), 1.0)


def loc_soft_targets_xent(logits: jax.Array, targets: jax.Array, weights: jax.Array, *,
                          loc_first_id: int, num_bins: int, sigma: float) -> jax.Array:
  """Per-example mean cross-entropy where location-token targets are ordinal soft targets.

  A target `<locK>` becomes a discretised Gaussian over the location bins centred on K with
  standard deviation `sigma` bins (truncated to the location tokens, renormalised); other targets
  stay one-hot. With hard targets a near miss (bin K+1) costs as much as a wild one, and each of
  the 1024 bins is seen rarely in a short run; the Gaussian makes neighbouring bins share the
  gradient, so the logits become smooth in K and their argmax lands near the truth early on.

  Args:
    logits: [B, L, V] any float dtype (computed in float32).
    targets: [B, L] int32; location tokens are ids loc_first_id .. loc_first_id + num_bins - 1.
    weights: [B, L] 0/1.
    loc_first_id, num_bins: where the location tokens sit in the vocabulary (CONTRACTS C).
    sigma: Gaussian width in bins (> 0).

  Returns:
    [B] float32; 0 for examples without a weighted token.
  """
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  hard = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
  k = targets - loc_first_id
  is_loc = (k >= 0) & (k < num_bins)
  bins = jnp.arange(num_bins, dtype=jnp.float32)
  # Centres clipped into range: other targets must not give 0/0 (NaN gradients through where).
  centre = jnp.clip(k, 0, num_bins - 1).astype(jnp.float32)
  q = jnp.exp(-0.5 * ((bins - centre[..., None]) / sigma) ** 2)
  q = q / q.sum(-1, keepdims=True)  # [B, L, num_bins]
  soft = -(q * jax.lax.dynamic_slice_in_dim(logp, loc_first_id, num_bins, axis=-1)).sum(-1)
  xent = jnp.where(is_loc, soft, hard)
  weights = weights.astype(jnp.float32)
  return (xent * weights).sum(-1) / jnp.maximum(weights.sum(-1), 1.0)


def per_task_sums(per_example: jax.Array, task_id: jax.Array,
                  num_tasks: int) -> dict[str, jax.Array]:
  """Sums and counts of a per-example value by task. per_example, task_id: [B]."""
  onehot = jax.nn.one_hot(task_id, num_tasks, dtype=jnp.float32)  # [B, T]
  return {"loss_sum_per_task": per_example @ onehot, "count_per_task": onehot.sum(0)}


@register("captioning")
def captioning(model: Any, module: Any, params: Any, batch: dict[str, jax.Array],
               rng: jax.Array, config: ml_collections.ConfigDict,
               train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Prefix-LM token cross-entropy (CONTRACTS D) with CapPa parallel prediction in training.

  batch: image [B, R, R, 1]; text, mask_ar, mask_loss [B, L]; task_id [B].
  Model input is text[:, :-1]; targets text[:, 1:] weighted by mask_loss[:, 1:]. In training,
  with probability config.loss.masked_pred_prob an example's suffix inputs are replaced by [MASK]
  (id config.vocab_size) and attend bidirectionally, by the model module's
  `parallel_prediction_inputs`; with masking_ratio < 1 only masked positions keep loss weight.
  With config.loss.loc_label_sigma > 0 (training only), location-token targets are Gaussian
  soft targets over the neighbouring bins (`loc_soft_targets_xent`); config.loss.loc_first_id
  is the id of `<loc0000>`. Evaluation losses stay plain cross-entropy.
  """
  pp_rng, dropout_rng = jax.random.split(rng)
  if train and config.loss.masked_pred_prob > 0:
    inputs, mask_ar, weights = module.parallel_prediction_inputs(
        pp_rng, batch["text"], batch["mask_ar"], batch["mask_loss"], mask_id=config.vocab_size,
        masked_pred_prob=config.loss.masked_pred_prob, masking_ratio=config.loss.masking_ratio)
  else:
    inputs, mask_ar = batch["text"][:, :-1], batch["mask_ar"][:, :-1]
    weights = batch["mask_loss"][:, 1:]
  targets = batch["text"][:, 1:]
  # Padding keys must stay hidden when parallel prediction makes the whole row bidirectional.
  kwargs = {"mask_tokens": (batch["text"][:, :-1] != PAD_ID).astype(jnp.int32)}
  logits, _ = model.apply({"params": params}, batch["image"], inputs, mask_ar, train=train,
                          rngs={"dropout": dropout_rng} if train else {}, **kwargs)
  sigma = config.loss.get("loc_label_sigma", 0.0)
  if train and sigma > 0:
    per_example = loc_soft_targets_xent(
        logits, targets, weights, loc_first_id=config.loss.loc_first_id,
        num_bins=NUM_LOC_BINS, sigma=sigma)
  else:
    per_example = weighted_token_xent(logits, targets, weights)
  return per_example.mean(), per_task_sums(per_example, batch["task_id"], config.loss.num_tasks)
