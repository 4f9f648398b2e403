"""big_vision npz checkpoints: save, load, and a strict merge into a model's params.

An npz file holds one array per parameter, keyed by the '/'-joined path
('Transformer/encoderblock_0/MlpBlock_0/Dense_0/kernel'). SigLIP two-tower files keep
the image tower under 'params/img/...' (or 'img/...'); `path:img` selects that
sub-tree explicitly and a file whose top level has no ViT is searched for it. Loading
into a ViT converts between the scanned ('Transformer/encoderblock', depth axis 0)
and unscanned layouts, resamples 'pos_embedding' to the model's grid, and sums an RGB
stem over channels when the model's stem takes 1 channel (the image is gray, so
replicating it to RGB and applying the RGB kernel is the same).
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterable, Mapping

import jax
import numpy as np

from locvqa_jax.models import vit

_TOWER_ROOTS = ("", "params/", "params/img/", "img/")


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """Nested dict -> {'a/b/c': leaf}."""
  flat = {}
  for key, value in tree.items():
    path = f"{prefix}{key}"
    if isinstance(value, Mapping):
      flat.update(flatten(value, path + "/"))
    else:
      flat[path] = value
  return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
  """{'a/b/c': leaf} -> nested dict."""
  tree: dict[str, Any] = {}
  for path, value in flat.items():
    node = tree
    *parents, leaf = path.split("/")
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = value
  return tree


def save(path: str, params: Mapping[str, Any]) -> None:
  """Writes params (nested dict of arrays) as a big_vision npz file."""
  flat = {k: np.asarray(jax.device_get(v)) for k, v in flatten(params).items()}
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "wb") as f:
    np.savez(f, **flat)


def load_flat(path: str) -> dict[str, np.ndarray]:
  """Reads an npz file into {'a/b/c': array}. `path:sub/tree` keeps only that sub-tree."""
  file, subtree = _split_subtree(path)
  if not os.path.exists(file):
    raise FileNotFoundError(f"npz checkpoint {file!r} does not exist (only local paths load).")
  with np.load(file, allow_pickle=False) as data:
    flat = {k: data[k] for k in data.files}
  if subtree:
    flat = _select(flat, subtree, file)
  return flat


def load(path: str) -> dict[str, Any]:
  """Reads an npz file (optionally `path:sub/tree`) into a nested dict of numpy arrays."""
  return unflatten(load_flat(path))


def _split_subtree(path: str) -> tuple[str, str]:
  if os.path.exists(path) or ":" not in os.path.basename(path):
    return path, ""
  file, _, subtree = path.rpartition(":")
  return file, subtree.strip("/")


def _select(flat: Mapping[str, np.ndarray], subtree: str, file: str) -> dict[str, np.ndarray]:
  for root in (f"{subtree}/", f"params/{subtree}/"):
    sel = {k[len(root):]: v for k, v in flat.items() if k.startswith(root)}
    if sel:
      return sel
  tops = sorted({k.split("/")[0] for k in flat})
  raise KeyError(f"{file}: no sub-tree {subtree!r} (nor params/{subtree!r}); top-level keys: "
                 f"{tops}.")


def find_image_tower(flat: Mapping[str, np.ndarray], file: str = "<npz>"):
  """Returns the ViT sub-tree: the top level, 'params/', 'params/img/' or 'img/'."""
  for root in _TOWER_ROOTS:
    if f"{root}embedding/kernel" in flat:
      return {k[len(root):]: v for k, v in flat.items() if k.startswith(root)}
  raise KeyError(f"{file}: no ViT found (looked for embedding/kernel under "
                 f"{[r or '<top>' for r in _TOWER_ROOTS]}); pass path:subtree to choose one.")


def merge_strict(loaded: Mapping[str, Any], init: Mapping[str, Any],
                 dont_load: Iterable[str] = ()) -> dict[str, Any]:
  """Takes every parameter of `init` from `loaded`, strictly.

  Args:
    loaded: flat {'a/b': array} from a checkpoint.
    init: flat {'a/b': array or jax.ShapeDtypeStruct}, the model's parameters.
    dont_load: regexes (full match on the '/'-joined name); matching parameters keep
      their `init` value and matching checkpoint entries are ignored.

  Returns:
    flat dict with init's keys, loaded values cast to init's dtypes.

  Raises:
    ValueError listing every missing parameter, every unexpected checkpoint entry and
    every shape mismatch at once.
  """
  patterns = [re.compile(p) for p in dont_load]
  skip = lambda k: any(p.fullmatch(k) for p in patterns)
  missing = sorted(k for k in init if k not in loaded and not skip(k))
  unexpected = sorted(k for k in loaded if k not in init and not skip(k))
  mismatched = sorted(
      f"{k}: checkpoint {tuple(np.shape(loaded[k]))} vs model {tuple(init[k].shape)}"
      for k in init if k in loaded and not skip(k)
      and tuple(np.shape(loaded[k])) != tuple(init[k].shape))
  if missing or unexpected or mismatched:
    lines = ["Checkpoint does not match the model:"]
    for title, items in (("missing in checkpoint", missing),
                         ("unexpected in checkpoint", unexpected),
                         ("shape mismatch", mismatched)):
      if items:
        lines.append(f"  {title} ({len(items)}):")
        lines.extend(f"    {item}" for item in items)
    raise ValueError("\n".join(lines))
  return {k: (init[k] if skip(k) else np.asarray(loaded[k]).astype(init[k].dtype))
          for k in init}


def adapt_vit(loaded: Mapping[str, np.ndarray], init: Mapping[str, Any]) -> dict[str, Any]:
  """Converts a flat ViT checkpoint towards the model's layout (flat dicts).

  Scanned <-> unscanned blocks, pos_embedding resampling, RGB -> gray stem.
  Anything it cannot reconcile is left for `merge_strict` to report.
  """
  out = dict(loaded)
  init_scanned = any(k.startswith("Transformer/encoderblock/") for k in init)
  ckpt_scanned = any(k.startswith("Transformer/encoderblock/") for k in out)
  ckpt_loop = any(k.startswith("Transformer/encoderblock_") for k in out)
  if init_scanned and ckpt_loop and not ckpt_scanned:
    out = flatten(vit.loop_to_scan(unflatten(out)))
  elif not init_scanned and ckpt_scanned and any(
      k.startswith("Transformer/encoderblock_") for k in init):
    out = flatten(vit.scan_to_loop(unflatten(out)))
  if "pos_embedding" in out and "pos_embedding" in init:
    out["pos_embedding"] = vit.resample_posemb(out["pos_embedding"], init["pos_embedding"].shape)
  kernel = out.get("embedding/kernel")
  if (kernel is not None and "embedding/kernel" in init and kernel.ndim == 4
      and kernel.shape[2] == 3 and init["embedding/kernel"].shape[2] == 1):
    out["embedding/kernel"] = kernel.sum(axis=2, keepdims=True)
  return out


def load_encoder_init(path: str, init_params: Mapping[str, Any],
                      dont_load: Iterable[str] = ()) -> dict[str, Any]:
  """Loads a big_vision ViT or SigLIP image tower into a vit.Model's params.

  Args:
    path: local npz file, optionally `file.npz:subtree` (e.g. ':img', ':encoder').
    init_params: the vit.Model params (nested dict of arrays or ShapeDtypeStructs),
      e.g. params['encoder'] of cappa.Model; gives names, shapes and dtypes.
    dont_load: regexes of parameter names kept from init_params (e.g. 'head/.*').

  Returns:
    nested dict shaped like init_params.
  """
  flat = load_flat(path)
  if not _split_subtree(path)[1]:
    flat = find_image_tower(flat, path)
  init = flatten(init_params)
  try:
    merged = merge_strict(adapt_vit(flat, init), init, dont_load)
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from None
  return unflatten(merged)
