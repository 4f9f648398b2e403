"""Encoder initialisation from a checkpoint path: big_vision npz or Hugging Face SigLIP folder.

`load_encoder_weights` is what a config's `model_init` / `encoder_init` resolves to:

  'ckpt.npz' or 'ckpt.npz:img'   big_vision / SigLIP npz (locvqa_jax/models/npz.py)
  a folder with config.json       Hugging Face SiglipVisionModel or SiglipModel
                                  (locvqa_jax/export/hf_siglip.py; its vision tower)

Both go through the same strict merge: scanned/unscanned layouts convert, a learned
pos_embedding is resampled to the model's grid, an RGB stem is summed to the model's
1-channel stem, and every missing, unexpected or mis-shaped parameter is listed.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

from locvqa_jax.models import npz


def is_hf_folder(path: str) -> bool:
  """True when `path` is a directory holding a Hugging Face config.json."""
  return os.path.isdir(path) and os.path.exists(os.path.join(path, "config.json"))


def load_encoder_weights(path: str, init_params: Mapping[str, Any],
                         dont_load: Iterable[str] = ()) -> dict[str, Any]:
  """Loads ViT encoder weights from `path` into the structure of `init_params`.

  Args:
    path: `file.npz`, `file.npz:subtree`, or a local Hugging Face SigLIP folder
      (config.json + model.safetensors or a sharded safetensors index).
    init_params: the vit.Model params (nested dict of arrays or ShapeDtypeStructs),
      e.g. params['encoder']; gives names, shapes and dtypes.
    dont_load: regexes (full match) of parameter names kept from init_params; matching
      checkpoint entries are ignored (e.g. 'MAPHead_0/.*' for a model without a head).

  Returns:
    nested dict shaped like init_params.

  Raises:
    FileNotFoundError when `path` is neither an npz file nor a folder with config.json;
    ValueError naming `path` and every mismatching parameter.
  """
  if is_hf_folder(path):
    from locvqa_jax.export import hf_siglip  # pylint: disable=g-import-not-at-top
    _, params = hf_siglip.load_hf_encoder(path)
    init = npz.flatten(init_params)
    try:
      merged = npz.merge_strict(npz.adapt_vit(npz.flatten(params), init), init, dont_load)
    except ValueError as e:
      raise ValueError(f"{path}: {e}") from None
    return npz.unflatten(merged)
  if os.path.isdir(path):
    raise FileNotFoundError(f"{path} is a directory without config.json; expected a Hugging Face "
                            "SigLIP folder or an .npz file.")
  return npz.load_encoder_init(path, init_params, dont_load)
