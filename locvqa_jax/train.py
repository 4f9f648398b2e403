r"""The trainer, for both stages: model, loss, input and evaluators are chosen by name.

  python -m locvqa_jax.train --config configs/pretrain_locca.py:variant=micro,res=128 \
      --workdir W [--config.key=value ...]

Reads from the config: `model_name` (module `locvqa_jax.models.<name>`, a dotted path also
works) and `model` (its `Model` fields); `input.pipeline` (module `locvqa_jax.data.<name>`, see
`_Input`) and `input.*`; `loss.name` (locvqa_jax/losses.py); `evals` (name -> evaluator of
locvqa_jax/evaluators/); the optimizer keys of locvqa_jax/optim.py; `mesh`, `sharding_rules`;
`total_steps`, `seed`, `log_every_steps`, `ckpt_every_steps`, `keep_ckpts`, `best`;
`distributed`. A workdir that holds checkpoints is resumed from the latest one, with the same data
order. A NaN or Inf loss stops the run, names the step and leaves the last good checkpoint as the
latest.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import math
import os
import sys
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from locvqa_jax import checkpointing
from locvqa_jax import config as config_lib
from locvqa_jax import evaluators
from locvqa_jax import inputs
from locvqa_jax import losses
from locvqa_jax import metrics_log
from locvqa_jax import optim
from locvqa_jax import sharding

REQUIRED_KEYS = (
    "vocab_size", "tokenizer", "model_name", "model", "input.pipeline", "input.batch_size", "loss.name", "evals", "seed",
    "total_steps", "log_every_steps", "ckpt_every_steps", "keep_ckpts", "best.metric",
    "best.mode", "mesh", "sharding_rules", "lr", "wd", "wd_mask", "optax", "schedule",
    "grad_clip_norm", "frozen", "lr_mults", "grad_accum_steps", "distributed.enabled")


class NonFiniteLossError(FloatingPointError):
  """Raised when a training step's loss is NaN or Inf."""


def import_by_name(name: str, package: str) -> Any:
  """Module `locvqa_jax.<package>.<name>`, else the top-level module `name` (tests, plug-ins)."""
  for full in (f"locvqa_jax.{package}.{name}", name):
    try:
      return importlib.import_module(full)
    except ModuleNotFoundError as e:
      if e.name != full and not full.startswith(f"{e.name}."):
        raise  # The module exists but one of its own imports failed.
  raise ModuleNotFoundError(f"'{name}' names no module: expected locvqa_jax/{package}/{name}.py "
                            f"or an importable module '{name}'")


@dataclasses.dataclass
class Trainer:
  """What `build_trainer` makes: the model, shardings and the two jitted functions.

  init_state(rng) -> state and update_step(state, batch) -> (state, metrics) run under the mesh
  with explicit shardings; state is {'params', 'opt', 'step', 'rng'}.
  """
  model: Any
  module: Any
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  state_shardings: Any
  abstract_state: Any
  init_state: Callable[[jax.Array], Any]
  update_step: Callable[[Any, Any], tuple[Any, dict[str, jax.Array]]]
  num_params: int


def build_trainer(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh,
                  example_batch: dict[str, np.ndarray]) -> Trainer:
  """Model, optimizer, shardings and the jitted init and update step (nothing materialised).

  Args:
    example_batch: a batch with the real shapes (CONTRACTS D: image [B, R, R, 1], text [B, L],
      mask_ar, mask_loss [B, L], task_id [B], ...); only shapes and dtypes are used.
  """
  # ------------------------------------------------------------------ model and optimizer
  module = import_by_name(config.model_name, "models")
  model = module.Model(**config.model.to_dict())
  loss_fn = losses.get(config.loss.name)

  def init(rng):
    b = jax.tree.map(lambda x: jnp.zeros((1,) + x.shape[1:], x.dtype), example_batch)
    return model.init(rng, b["image"], b["text"][:, :-1], b["mask_ar"][:, :-1])["params"]

  param_shapes = jax.eval_shape(init, jax.random.PRNGKey(0))
  tx, schedule = optim.make_optimizer(config, param_shapes, config.total_steps)

  # ------------------------------------------------------------------ sharding
  def init_state(rng):
    init_rng, train_rng = jax.random.split(rng)
    params = init(init_rng)
    return {"params": params, "opt": tx.init(params), "step": jnp.zeros((), jnp.int32),
            "rng": train_rng}

  state_shapes = jax.eval_shape(init_state, jax.random.PRNGKey(0))
  state_shardings = sharding.tree_shardings(mesh, state_shapes, config.sharding_rules)
  abstract_state = jax.tree.map(
      lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), state_shapes,
      state_shardings)

  # ------------------------------------------------------------------ update step
  accum = int(config.grad_accum_steps)

  def grad_fn(params, batch, rng):
    def scalar_loss(p):
      return loss_fn(model, module, p, batch, rng, config, True)
    (loss, aux), grads = jax.value_and_grad(scalar_loss, has_aux=True)(params)
    return grads, dict(aux, loss=loss)

  def update_fn(state, batch):
    step_rng = jax.random.fold_in(state["rng"], state["step"])
    grads, aux = optim.accumulate_gradients(grad_fn, state["params"], batch, step_rng, accum)
    updates, opt = tx.update(grads, state["opt"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    metrics = {"train/loss": aux["loss"] / accum, "train/grad_norm": optax.tree.norm(grads),
               "train/lr": schedule(state["step"]),
               "train/loss_per_task": aux["loss_sum_per_task"] /
                                      jnp.maximum(aux["count_per_task"], 1.0),
               "train/count_per_task": aux["count_per_task"]}
    new_state = {"params": params, "opt": opt, "step": state["step"] + 1, "rng": state["rng"]}
    return new_state, metrics

  batch_shardings = jax.tree.map(lambda _: sharding.batch_sharding(mesh), example_batch)
  update_step = jax.jit(update_fn, in_shardings=(state_shardings, batch_shardings),
                        out_shardings=(state_shardings, sharding.replicated(mesh)),
                        donate_argnums=(0,))
  return Trainer(
      model=model, module=module, tx=tx, schedule=schedule, state_shardings=state_shardings,
      abstract_state=abstract_state,
      init_state=jax.jit(init_state, out_shardings=state_shardings), update_step=update_step,
      num_params=sum(int(np.prod(x.shape)) for x in jax.tree.leaves(param_shapes)))


def _set_vocab_size(config: ml_collections.ConfigDict, vocab_size: int) -> None:
  """Fills config.vocab_size from the tokenizer (model fields refer to it by FieldReference)."""
  if config.vocab_size is None:
    with config.unlocked():
      config.vocab_size = int(vocab_size)
  elif config.vocab_size != vocab_size:
    raise ValueError(f"config.vocab_size={config.vocab_size} but the tokenizer "
                     f"({config.tokenizer}) has {vocab_size} ids; leave config.vocab_size None to "
                     "take the tokenizer's")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (or resumes) in `workdir`; returns the last train and eval metrics."""
  config_lib.check_required(config, REQUIRED_KEYS, "locvqa_jax.train")
  os.makedirs(workdir, exist_ok=True)

  # ------------------------------------------------------------------ logging
  sharding.maybe_initialize_distributed(
      config.distributed.enabled,
      **{k: v for k, v in config.distributed.items() if k != "enabled"})
  is_main = jax.process_index() == 0
  logging.info("devices: %d global, %d local, process %d/%d", jax.device_count(),
               jax.local_device_count(), jax.process_index(), jax.process_count())

  # ------------------------------------------------------------------ mesh
  mesh = sharding.make_mesh(config.mesh)

  # ------------------------------------------------------------------ input
  source = inputs.get(config.input.pipeline)
  tokenizer = source.build_tokenizer(config)
  _set_vocab_size(config, tokenizer.vocab_size)
  sharding.local_batch_size(config.input.batch_size, mesh)  # Fails early on a bad batch size.
  train_iter = source.train_iterator(config, tokenizer, global_batch_size=config.input.batch_size,
                                     seed=config.seed)
  ckpt = checkpointing.Checkpointer(workdir, max_to_keep=config.keep_ckpts)
  resume_step = ckpt.latest_step()
  if resume_step is not None:
    # The iterator is restored first so the batch used for shapes is the one step +1 trains on.
    _, iter_state, _ = ckpt.restore_iterator(resume_step)
    train_iter.set_state(iter_state)
  first_batch = next(train_iter)

  # ------------------------------------------------------------------ model, optimizer, update step
  trainer = build_trainer(config, mesh, first_batch)
  model, module = trainer.model, trainer.module
  if is_main:
    logging.info("model %s: %s parameters", config.model_name, f"{trainer.num_params:,}")

  # ------------------------------------------------------------------ checkpoint
  tokenizer_bytes = tokenizer.to_bytes() if hasattr(tokenizer, "to_bytes") else None
  if resume_step is not None:
    state, _, _ = ckpt.restore(resume_step, trainer.abstract_state)
    logging.info("resumed from %s at step %d", ckpt.directory, resume_step)
  else:
    state = trainer.init_state(jax.random.PRNGKey(config.seed))
    if hasattr(module, "load_pretrained"):  # A model module may start from earlier runs.
      state["params"] = module.load_pretrained(state["params"], config)
  start_step = int(jax.device_get(state["step"]))

  def save(step):
    ckpt.save(step, state, train_iter.get_state(),
              checkpointing.make_meta(config, tokenizer_bytes, step))

  # ------------------------------------------------------------------ eval
  evals = {name: evaluators.get(cfg.type).Evaluator(
      config=config, eval_config=cfg, model=model, module=module, source=source,
      tokenizer=tokenizer, mesh=mesh) for name, cfg in config.evals.items()}
  best = _BestTracker(workdir, config.best, evals) if config.best.metric else None

  def run_evals(step, final):
    out = {}
    for name, ev in evals.items():
      every = ev.every_steps
      if final or (every and step % every == 0):
        t0 = time.time()
        results = ev.run(state["params"], step, workdir)
        out.update({f"{name}/{k}": v for k, v in results.items()})
        out[f"{name}/seconds"] = time.time() - t0
    if out and best is not None:
      best.update(step, out, state, train_iter.get_state(),
                  checkpointing.make_meta(config, tokenizer_bytes, step))
    return out

  # ------------------------------------------------------------------ loop
  writer = metrics_log.MetricWriter(workdir, config.total_steps, start_step, enabled=is_main)
  task_names = list(config.loss.get("task_names", ()))
  last_train, last_eval = {}, {}
  batch = first_batch
  step = start_step
  t_log = time.time()
  try:
    with checkpointing.PreemptionWatch() as preemption:
      while step < config.total_steps:
        if batch is None:
          batch = next(train_iter)
        state, metrics = trainer.update_step(state, sharding.make_global_batch(batch, mesh))
        batch = None
        step += 1
        loss = float(jax.device_get(metrics["train/loss"]))
        if not math.isfinite(loss):
          raise NonFiniteLossError(
              f"training loss is {loss} at step {step}; stopping. The last good checkpoint is "
              f"step {ckpt.latest_step()} in {ckpt.directory}")
        writer.advance(step, {"loss": loss})
        if step % config.log_every_steps == 0 or step == config.total_steps:
          now = time.time()
          last_train = _flatten_train(jax.device_get(metrics), task_names)
          last_train["train/steps_per_sec"] = config.log_every_steps / max(now - t_log, 1e-9)
          t_log = now
          writer.write(step, last_train)
        preempted = preemption.requested or ckpt.manager.reached_preemption(step)
        if step % config.ckpt_every_steps == 0 or step == config.total_steps or preempted:
          save(step)
        if preempted:
          writer.note(f"preempted: saved step {step} to {ckpt.directory}")
          return {"train": last_train, "eval": last_eval, "preempted_at": step}
        eval_out = run_evals(step, final=step == config.total_steps)
        if eval_out:
          last_eval = eval_out
          writer.write(step, eval_out)
          writer.note(_format_eval(step, eval_out))
  finally:
    ckpt.wait()
    ckpt.close()
    if best is not None:
      best.close()
    writer.close()
    if is_main:
      metrics_log.plot_curves(workdir)
  return {"train": last_train, "eval": last_eval, "state": state}


def _flatten_train(metrics: dict[str, Any], task_names: Sequence[str]) -> dict[str, float]:
  out = {}
  for key, value in metrics.items():
    value = np.asarray(value)
    if value.ndim == 0:
      out[key] = float(value)
    elif key == "train/loss_per_task":
      counts = metrics["train/count_per_task"]
      for i, v in enumerate(value):
        if counts[i] > 0:
          out[f"train/loss_{task_names[i] if i < len(task_names) else i}"] = float(v)
  return out


def _format_eval(step: int, metrics: dict[str, Any]) -> str:
  parts = [f"{k}={float(v):.4g}" for k, v in sorted(metrics.items())
           if np.ndim(v) == 0 and not k.endswith("/seconds")]
  return f"[eval @ {step}] " + " ".join(parts)


class _BestTracker:
  """Keeps the checkpoint with the best validation metric in W/checkpoints_best/."""

  def __init__(self, workdir: str, best_config: ml_collections.ConfigDict, evals: dict):
    self.metric, self.mode = best_config.metric, best_config.mode
    if self.mode not in ("min", "max"):
      raise ValueError(f"config.best.mode={self.mode!r}; expected 'min' or 'max'")
    name = self.metric.split("/", 1)[0]
    if name not in evals:
      raise ValueError(f"config.best.metric={self.metric!r} names evaluator '{name}', which is "
                       f"not in config.evals {sorted(evals)}")
    if evals[name].split != "validation":
      raise ValueError(f"config.best.metric={self.metric!r} reads split "
                       f"'{evals[name].split}'; the best checkpoint is chosen on 'validation'")
    self.ckpt = checkpointing.Checkpointer(workdir, max_to_keep=1, best=True)
    self.value = None
    if self.ckpt.latest_step() is not None:  # A resumed run must beat the best so far.
      _, _, meta = self.ckpt.restore_iterator(self.ckpt.latest_step())
      self.value = meta.get("best_value")

  def update(self, step, metrics, state, iter_state, meta):
    if self.metric not in metrics:
      return
    value = float(metrics[self.metric])
    better = self.value is None or (value < self.value if self.mode == "min" else
                                    value > self.value)
    if better and math.isfinite(value):
      self.value = value
      self.ckpt.save(step, state, iter_state, dict(meta, best_metric=self.metric,
                                                   best_value=value))

  def close(self):
    self.ckpt.wait()
    self.ckpt.close()


def main(argv: Sequence[str] | None = None) -> None:
  argv = list(sys.argv[1:] if argv is None else argv)
  rest, overrides = config_lib.split_overrides(argv)
  parser = argparse.ArgumentParser(prog="python -m locvqa_jax.train", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", required=True, help="configs/X.py[:arg=value,...]")
  parser.add_argument("--workdir", required=True, help="output and resume directory")
  args = parser.parse_args(rest)
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
  # orbax logs every save step by step at INFO through absl.
  logging.getLogger("absl").setLevel(logging.WARNING)
  try:
    config = config_lib.load_config(args.config, overrides)
  except config_lib.ConfigError as e:
    parser.exit(2, f"error: {e}\n")
  try:
    train_and_evaluate(config, args.workdir)
  except NonFiniteLossError as e:
    logging.error("%s", e)
    sys.exit(3)


if __name__ == "__main__":
  main()
