"""Orbax checkpoints of a workdir: `W/checkpoints/<step>/{state,data_iter,meta}`.

  state      {'params', 'opt', 'step', 'rng'}: sharded arrays, restored onto the shardings of an
             abstract target so nothing is materialised unsharded.
  data_iter  every process's input iterator state (grain's `get_state()`, bytes kept as
             base64), so a resumed run sees the same data order on each process.
  meta       JSON: the config, the tokenizer (base64 of its serialized model), package versions,
             the git revision and the step.

The checkpoint chosen on validation (never on test) lives beside it in `W/checkpoints_best/`.
`load_encoder(workdir)` is the one function stage 2, export and the answer command use.
"""

from __future__ import annotations

import base64
import importlib
import importlib.metadata
import json
import logging
import os
import signal
import subprocess
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

ITEMS = ("state", "data_iter", "meta")


def _item_handlers() -> dict[str, ocp.CheckpointHandler]:
  return {"state": ocp.StandardCheckpointHandler(), "data_iter": ocp.JsonCheckpointHandler(),
          "meta": ocp.JsonCheckpointHandler()}
_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "numpy",
             "ml-collections", "sentencepiece", "tensorflow-datasets")


def checkpoint_dir(workdir: str, best: bool = False) -> str:
  return os.path.join(os.path.abspath(workdir), "checkpoints_best" if best else "checkpoints")


def package_versions() -> dict[str, str]:
  out = {}
  for name in _PACKAGES:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = "not installed"
  return out


def git_revision() -> str:
  """The source tree's commit (with '-dirty' if modified), or 'unknown' outside a checkout."""
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                         check=True, timeout=10).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                           capture_output=True, text=True, timeout=10).stdout.strip()
    return rev + ("-dirty" if dirty else "")
  except (OSError, subprocess.SubprocessError):
    return "unknown"


def make_meta(config: ml_collections.ConfigDict, tokenizer_bytes: bytes | None,
              step: int) -> dict[str, Any]:
  return {
      "config": json.loads(config.to_json_best_effort()),
      "tokenizer_b64": base64.b64encode(tokenizer_bytes).decode() if tokenizer_bytes else None,
      "versions": package_versions(),
      "git_revision": git_revision(),
      "step": int(step),
  }


def encode_iter_state(state: Any) -> dict[str, Any]:
  """JSON form of an iterator state: grain gives bytes (PyGrain) or a JSON-able dict."""
  if isinstance(state, bytes):
    return {"bytes_b64": base64.b64encode(state).decode()}
  return {"json": state}


def decode_iter_state(blob: dict[str, Any]) -> Any:
  return base64.b64decode(blob["bytes_b64"]) if "bytes_b64" in blob else blob["json"]


def _allgather_json(text: str) -> list[str]:
  """Every process's string, in process order (a collective: all processes must call it)."""
  if jax.process_count() == 1:
    return [text]
  from jax.experimental import multihost_utils
  data = np.frombuffer(text.encode(), np.uint8)
  lengths = multihost_utils.process_allgather(np.array([len(data)], np.int32))
  padded = np.zeros(int(np.max(lengths)), np.uint8)
  padded[:len(data)] = data
  rows = multihost_utils.process_allgather(padded)
  return [bytes(rows[i][:int(lengths[i][0])]).decode() for i in range(jax.process_count())]


def pack_iter_states(state: Any) -> dict[str, Any]:
  """All processes' iterator states in one JSON item (orbax writes JSON on process 0 only)."""
  return {"per_process": [json.loads(t) for t in
                          _allgather_json(json.dumps(encode_iter_state(state)))]}


def unpack_iter_state(blob: dict[str, Any]) -> Any:
  """This process's iterator state from `pack_iter_states`' item."""
  states = blob["per_process"]
  if len(states) != jax.process_count():
    raise ValueError(f"the checkpoint holds the data iterators of {len(states)} processes; this "
                     f"run has {jax.process_count()}: resume with the same number of processes")
  return decode_iter_state(states[jax.process_index()])


class PreemptionWatch:
  """Turns SIGTERM into a flag the training loop polls, so it can save and exit cleanly."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self) -> "PreemptionWatch":
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handler)
    except ValueError:  # Not the main thread (e.g. some notebook runners): no handler.
      self._previous = None
    return self

  def _handler(self, signum, frame):
    del signum, frame
    logging.warning("SIGTERM received: saving a checkpoint and stopping")
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


class Checkpointer:
  """Saves and restores the three items of a workdir's checkpoints."""

  def __init__(self, workdir: str, *, max_to_keep: int = 2, best: bool = False,
               async_save: bool = True):
    self.directory = checkpoint_dir(workdir, best)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True, enable_async_checkpointing=async_save)
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_handlers=_item_handlers())

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def save(self, step: int, state: dict[str, Any], iter_state: Any,
           meta: dict[str, Any]) -> None:
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data_iter=ocp.args.JsonSave(pack_iter_states(iter_state)),
        meta=ocp.args.JsonSave(meta)), force=True)

  def restore(self, step: int, abstract_state: Any) -> tuple[dict[str, Any], Any, dict]:
    """Restores (state, iterator state, meta); state lands on abstract_state's shardings."""
    out = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data_iter=ocp.args.JsonRestore(),
        meta=ocp.args.JsonRestore()))
    return out["state"], unpack_iter_state(out["data_iter"]), out["meta"]

  def restore_iterator(self, step: int) -> tuple[int, Any, dict]:
    """(step, iterator state, meta) without touching the (large) state item."""
    out = self.manager.restore(step, args=ocp.args.Composite(
        data_iter=ocp.args.JsonRestore(), meta=ocp.args.JsonRestore()))
    return step, unpack_iter_state(out["data_iter"]), out["meta"]

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()


def _resolve(workdir: str, step: int | None) -> tuple[ocp.CheckpointManager, int]:
  directory = checkpoint_dir(workdir)
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"no checkpoints in {directory}")
  manager = ocp.CheckpointManager(directory, item_handlers=_item_handlers())
  steps = list(manager.all_steps())
  if not steps:
    raise FileNotFoundError(f"no checkpoints in {directory}")
  if step is None:
    step = max(steps)
  elif step not in steps:
    raise FileNotFoundError(f"no checkpoint for step {step} in {directory}; have {sorted(steps)}")
  return manager, step


def load_meta(workdir: str, step: int | None = None) -> dict[str, Any]:
  """The `meta` item of a checkpoint (latest if step is None)."""
  manager, step = _resolve(workdir, step)
  return manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]


def load_params(workdir: str, step: int | None = None) -> tuple[dict[str, Any], Any]:
  """(meta, params as numpy arrays on the host) of a checkpoint (latest if step is None)."""
  manager, step = _resolve(workdir, step)
  tree = manager.item_metadata(step)["state"]
  # Host numpy targets: the saved shardings may name devices this process does not have.
  target = jax.tree.map(lambda m: np.empty(m.shape, m.dtype), tree)
  out = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
  return out["meta"], out["state"]["params"]


def load_encoder(workdir: str,
                 step: int | None = None) -> tuple[ml_collections.ConfigDict, dict[str, Any]]:
  """The pretrained encoder of a workdir: (encoder config, encoder params).

  Args:
    workdir: a training workdir (its `checkpoints/` holds the steps).
    step: a saved step; the latest when None.

  Returns:
    (config.model.encoder of the run as a ConfigDict, params['encoder'] as numpy arrays).
  """
  meta, params = load_params(workdir, step)
  model_config = meta["config"].get("model", {})
  if "encoder" not in params:
    raise KeyError(f"checkpoint in {checkpoint_dir(workdir)} has no params['encoder']; params "
                   f"keys {sorted(params)}")
  encoder = dict(model_config.get("encoder") or {})
  preset = model_config.get("preset")
  if preset:  # Resolve the model's named preset so the returned config is complete.
    module = importlib.import_module(f"locvqa_jax.models.{meta['config']['model_name']}")
    encoder = {**module.PRESETS[preset]["encoder"], **encoder}
  if not encoder:
    raise KeyError(f"checkpoint in {checkpoint_dir(workdir)} has no config.model.encoder; "
                   f"config.model keys {sorted(model_config)}")
  return ml_collections.ConfigDict(encoder), params["encoder"]


def load_tokenizer_bytes(workdir: str, step: int | None = None) -> bytes:
  """The tokenizer model embedded in a checkpoint's meta."""
  blob = load_meta(workdir, step).get("tokenizer_b64")
  if not blob:
    raise KeyError(f"checkpoint in {checkpoint_dir(workdir)} carries no tokenizer")
  return base64.b64decode(blob)
