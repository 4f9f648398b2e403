"""Where the difference-VQA model's pretrained weights come from (`config.init`).

  config.init.encoder          ''                  random encoder (smoke tests only)
                               'W' or 'W:1000'      a pretraining workdir, latest or given step
                               'file.npz[:subtree]' a big_vision ViT / SigLIP npz
                               'DIR'                a local Hugging Face SigLIP folder
                                                    (config.json + *.safetensors; the vision
                                                    tower of a SiglipModel folder is taken)
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
  kind: str            # 'workdir', 'npz' or 'hf'
  path: str            # the workdir, the npz file ('file.npz:sub'), or the HF folder
  step: Optional[int]  # workdir step; None: the latest (always None for npz and hf)


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
  if os.path.isdir(os.path.join(path, "checkpoints")):
    return EncoderInit("workdir", path, step)
  if os.path.isfile(os.path.join(path, "config.json")):
    if step is not None:
      raise ValueError(f"config.init.encoder={spec!r}: {path} is a Hugging Face folder, which "
                       f"has no steps; drop ':{step}'")
    return EncoderInit("hf", path, None)
  raise FileNotFoundError(f"config.init.encoder={spec!r}: {path} is not a pretraining workdir "
                          "(no checkpoints/ inside), a Hugging Face SigLIP folder (no "
                          "config.json inside) nor an .npz file")


def resolve_step(spec: EncoderInit) -> Optional[int]:
  """The workdir step that will be loaded (the latest when none is given); None for npz."""
  if spec.kind != "workdir":
    return None
  if spec.step is not None:
    return spec.step
  from locvqa_jax import checkpointing  # pylint: disable=g-import-not-at-top
  return int(checkpointing.load_meta(spec.path)["step"])


def weights_version(spec: EncoderInit) -> str:
  """What tells two loads of the same encoder_init apart: the workdir step that will be
  loaded, or the size and modification time of an npz / HF folder's weight files."""
  if spec.kind == "workdir":
    return str(resolve_step(spec))
  if spec.kind == "npz":
    files = [spec.path[:spec.path.index(".npz") + 4]]
  else:
    files = sorted(os.path.join(spec.path, f) for f in os.listdir(spec.path)
                   if f.endswith(".safetensors"))
  return ";".join(f"{os.path.basename(f)}:{os.stat(f).st_size}:{os.stat(f).st_mtime_ns}"
                  for f in files)


def hf_encoder_config(spec: EncoderInit) -> dict[str, Any]:
  """vit.Model fields of a Hugging Face SigLIP folder's vision tower (from its config.json).

  The stem is 1-channel (this project's grayscale images; an RGB checkpoint stem is summed
  over its channels when loaded) and the head is dropped (pool_type 'none').
  """
  from locvqa_jax.export import hf_siglip  # pylint: disable=g-import-not-at-top
  enc = hf_siglip.config_to_vit_kwargs(hf_siglip.read_config(spec.path), spec.path)
  enc.update(channels=1, pool_type="none", scan=False, remat_policy="none", dtype_mm="float32")
  return enc


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
  if spec.kind == "hf":
    from locvqa_jax.models import init_from  # pylint: disable=g-import-not-at-top
    has_head = any(k.startswith("MAPHead_0/") for k in npz.flatten(init_shapes))
    # The difference-VQA encoder reads tokens: a SigLIP attention-pooling head is not loaded.
    return init_from.load_encoder_weights(spec.path, init_shapes,
                                          () if has_head else ("MAPHead_0/.*",))
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
  """Replaces params['encoder'] (and params['lm'] where the decoder matches) with loaded values,
  then sets params['image_norm'] (when the model has it) from the training images' tokens.

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
  elif "encoder" in params:
    loaded = load_encoder_params(config, params["encoder"])
    params["encoder"] = jax.tree.map(sharding.place_like, loaded, params["encoder"])
    logging.info("encoder loaded from %s", config.init.encoder)
  if spec is not None and config.init.lm_from_decoder and spec.kind == "workdir":
    from locvqa_jax import checkpointing  # pylint: disable=g-import-not-at-top
    from locvqa_jax.models import diff_vqa  # pylint: disable=g-import-not-at-top
    _, pre = checkpointing.load_params(spec.path, spec.step)
    lm, report = diff_vqa.lm_params_from_cappa(_to_host(params["lm"]), pre["decoder"])
    params["lm"] = jax.tree.map(sharding.place_like, lm, params["lm"])
    logging.info("language model: %d tensors from the pretraining decoder, %d kept at init (%s)",
                 len(report["copied"]), len(report["kept"]), ", ".join(report["kept"][:6]))
  if "image_norm" in params:
    from locvqa_jax import image_stats  # pylint: disable=g-import-not-at-top
    # Cached features already are the encoder's outputs: no need to gather its weights.
    encoder = None if config.input.features.enabled else _to_host(params["encoder"])
    mean, inv_std = image_stats.training_statistics(config, encoder)
    params["image_norm"] = {
        "mean": sharding.place_like(mean, params["image_norm"]["mean"]),
        "inv_std": sharding.place_like(inv_std, params["image_norm"]["inv_std"])}
    logging.info("image_norm: encoder token statistics of the training images set")
  return params
