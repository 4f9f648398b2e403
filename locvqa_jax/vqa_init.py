"""Where the difference-VQA model's pretrained weights come from (`config.init`).

  config.init.encoder          ''                  random encoder (smoke tests only)
                               'W' or 'W:1000'      a pretraining workdir, latest or given step
                               'file.npz[:subtree]' a big_vision ViT / SigLIP npz
  config.init.lm_from_decoder  True: with a workdir, start the language model from the
                               pretraining decoder where shapes match (diff_vqa.lm_params_from_cappa)

`load_pretrained(params, config)` is called by the trainer once, on a fresh start, with the
freshly initialised (sharded) parameters and returns them with the loaded values, on the same
shardings. The encoder is loaded strictly: any missing, unexpected or mis-shaped parameter is
named.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from typing import Any, Mapping, Optional

import jax
import numpy as np

from locvqa_jax import sharding
from locvqa_jax.models import npz
from locvqa_jax.models import vit


@dataclasses.dataclass(frozen=True)
class EncoderInit:
  kind: str            # 'workdir' or 'npz'
  path: str            # the workdir, or the npz file (subtree included as 'file.npz:sub')
  step: Optional[int]  # workdir step; None: the latest


def parse_encoder_init(spec: str) -> Optional[EncoderInit]:
  """Parses config.init.encoder; None for ''. Raises naming the key when the path is absent."""
  if not spec:
    return None
  if ".npz" in spec:
    file = spec[:spec.index(".npz") + 4]
    if not os.path.isfile(file):
      raise FileNotFoundError(f"config.init.encoder={spec!r}: no file {file}")
    return EncoderInit("npz", spec, None)
  path, step = spec, None
  match = re.fullmatch(r"(.*):(\d+)", spec)
  if match:
    path, step = match.group(1), int(match.group(2))
  if not os.path.isdir(os.path.join(path, "checkpoints")):
    raise FileNotFoundError(f"config.init.encoder={spec!r}: {path} is not a pretraining workdir "
                            "(no checkpoints/ inside) nor an .npz file")
  return EncoderInit("workdir", path, step)


def resolve_step(spec: EncoderInit) -> Optional[int]:
  """The workdir step that will be loaded (the latest when none is given); None for npz."""
  if spec.kind != "workdir":
    return None
  if spec.step is not None:
    return spec.step
  from locvqa_jax import checkpointing  # pylint: disable=g-import-not-at-top
  return int(checkpointing.load_meta(spec.path)["step"])


def pretrain_encoder_config(spec: EncoderInit) -> dict[str, Any]:
  """vit.Model fields of a pretraining run's encoder (its checkpoint's config.model)."""
  from locvqa_jax import checkpointing  # pylint: disable=g-import-not-at-top
  from locvqa_jax.models import cappa  # pylint: disable=g-import-not-at-top
  model = checkpointing.load_meta(spec.path, spec.step)["config"]["model"]
  enc = dict(cappa.PRESETS[model["preset"]]["encoder"]) if model.get("preset") else {}
  enc.update(model.get("encoder") or {})
  return enc


def _encoder_shapes(encoder_config: Mapping[str, Any], res: int, channels: int = 1):
  model = vit.Model(**{**dict(encoder_config), "pool_type": "none"})
  image = jax.ShapeDtypeStruct((1, res, res, channels), np.float32)
  return jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), image)["params"]


def load_encoder_params(config: Any, init_shapes: Optional[Mapping[str, Any]] = None) -> Any:
  """The encoder parameters named by config.init.encoder, in config.model.encoder's layout.

  Args:
    config: a diff_vqa config (init.encoder, model.encoder, input.res).
    init_shapes: the model's params['encoder'] (arrays or shapes); derived from the config
      when None.
  """
  spec = parse_encoder_init(config.init.encoder)
  if spec is None:
    raise ValueError("config.init.encoder is empty: nothing to load")
  if init_shapes is None:
    res = int(str(config.input.res).lstrip("r"))
    init_shapes = _encoder_shapes(config.model.encoder.to_dict(), res)
  if spec.kind == "npz":
    return npz.load_encoder_init(spec.path, init_shapes)
  from locvqa_jax import checkpointing  # pylint: disable=g-import-not-at-top
  _, loaded = checkpointing.load_encoder(spec.path, spec.step)
  init = npz.flatten(init_shapes)
  try:
    merged = npz.merge_strict(npz.adapt_vit(npz.flatten(loaded), init), init)
  except ValueError as e:
    raise ValueError(f"config.init.encoder={config.init.encoder!r}: {e}\n(config.model.encoder "
                     "must describe the pretraining run's encoder; configs/diff_vqa.py reads it "
                     "from the checkpoint)") from None
  return npz.unflatten(merged)


def _to_host(tree: Any) -> Any:
  """Numpy copies of possibly sharded arrays (gathered from every process on multi-host)."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return jax.tree.map(lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True)), tree)


def load_pretrained(params: Mapping[str, Any], config: Any) -> dict[str, Any]:
  """Replaces params['encoder'] (and params['lm'] where the decoder matches) with loaded values.

  Args:
    params: the freshly initialised model parameters (arrays, possibly sharded).
    config: the diff_vqa config.

  Returns:
    params with the same structure, shapes and shardings.
  """
  spec = parse_encoder_init(config.init.encoder)
  params = dict(params)
  if spec is None:
    logging.warning("config.init.encoder is empty: the encoder starts random")
    return params
  if "encoder" in params:
    loaded = load_encoder_params(config, params["encoder"])
    params["encoder"] = jax.tree.map(sharding.place_like, loaded, params["encoder"])
    logging.info("encoder loaded from %s", config.init.encoder)
  if config.init.lm_from_decoder and spec.kind == "workdir":
    from locvqa_jax import checkpointing  # pylint: disable=g-import-not-at-top
    from locvqa_jax.models import diff_vqa  # pylint: disable=g-import-not-at-top
    _, pre = checkpointing.load_params(spec.path, spec.step)
    lm, report = diff_vqa.lm_params_from_cappa(_to_host(params["lm"]), pre["decoder"])
    params["lm"] = jax.tree.map(sharding.place_like, lm, params["lm"])
    logging.info("language model: %d tensors from the pretraining decoder, %d kept at init (%s)",
                 len(report["copied"]), len(report["kept"]), ", ".join(report["kept"][:6]))
  return params
