"""Frozen-encoder outputs computed once per image and stored, so stage 2 never re-runs the ViT.

With the encoder frozen, its output for an image never changes, so training and evaluation read
them from disk instead of pixels (no image decoding, augmentation or ViT pass per step; what makes
stage 2 cheap on a CPU). The price: no image augmentation while the cache is in use.

Layout of a cache directory (one per encoder and dataset resolution):

  meta.json                 encoder_init, encoder config, dataset fingerprint, dtype
  <split>.npy               [N_images, N_tokens, D] encoder tokens (float32 or float16)
  <split>_dicom_ids.json    the N_images dicom ids, in row order

`directory(config)` resolves `config.input.features.dir`; 'auto' puts the cache beside the
encoder it came from: `<pretraining workdir>/features_cache/<res>_<key>/` or
`<file.npz>.features_cache/<res>_<key>/` or `<HF folder>.features_cache/<res>_<key>/` (beside
the folder, which stays a clean Hugging Face folder), where <key> hashes the encoder_init (with
its step, or its weight files' sizes and times), the encoder config and the built dataset, so
the model and the blind baseline share it and a new checkpoint, replaced weights or a rebuilt
dataset get a new one.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from locvqa_jax.data import tasks
from locvqa_jax.models import vit

DATASET = "mimic_diff_vqa"


def encode_padded(run: Any, params: Any, images: Sequence[np.ndarray],
                  batch_size: int) -> np.ndarray:
  """Encoder tokens of up to batch_size images; a short batch is padded so `run` compiles once."""
  n = len(images)
  padded = np.stack(list(images) + [images[-1]] * (batch_size - n))
  return np.asarray(run(params, jnp.asarray(padded)))[:n]


def decode_image(value: Any) -> np.ndarray:
  """PNG bytes or a uint8 array [R, R, 1] -> float32 [R, R, 1] in [-1, 1]."""
  from locvqa_jax.data import augment  # pylint: disable=g-import-not-at-top
  return augment.to_float(augment.decode_image(value))


def pair_images(records: Sequence[Mapping[str, Any]]):
  """Unique (dicom_id, undecoded image) of every main and reference image, first seen first."""
  seen = set()
  for r in records:
    for side in ("ref", "main"):
      dicom = tasks.as_str(r[f"{side}_dicom_id"])
      if dicom not in seen:
        seen.add(dicom)
        yield dicom, r[f"{side}_image"]


def encoder_fn(encoder_config: Mapping[str, Any]):
  """A jitted (params, images [B, R, R, 1]) -> encoded [B, N, D] for vit.Model fields."""
  model = vit.Model(**{**dict(encoder_config), "pool_type": "none"})
  return jax.jit(lambda p, x: model.apply({"params": p}, x)[1]["encoded"])


def compute(encoder_config: Mapping[str, Any], encoder_params: Any,
            records: Sequence[Mapping[str, Any]], path: str, *, batch_size: int = 32,
            dtype: str = "float32", log_every: int = 0) -> int:
  """Runs the encoder over every image of `records` and writes `path` (.npy) + its ids.

  Args:
    encoder_config: vit.Model fields of the encoder.
    encoder_params: its parameters.
    records: mimic_diff_vqa records (main_image/ref_image as uint8 arrays or PNG bytes).
    path: the `<split>.npy` file to write; `<split>_dicom_ids.json` goes beside it.
    batch_size: images per encoder call (the last batch is padded, so one compilation).
    dtype: storage dtype, 'float32' or 'float16'.

  Returns:
    number of images written.
  """
  run = encoder_fn(encoder_config)
  params = jax.device_put(encoder_params)
  items = list(pair_images(records))
  if not items:
    raise ValueError(f"no images to encode for {path}")
  ids = [d for d, _ in items]
  out = None
  tmp = f"{path}.{os.getpid()}.tmp.npy"
  for start in range(0, len(items), batch_size):
    chunk = [decode_image(v) for _, v in items[start:start + batch_size]]
    n = len(chunk)
    encoded = encode_padded(run, params, chunk, batch_size)
    if out is None:
      out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.dtype(dtype),
                                      shape=(len(items),) + encoded.shape[1:])
    out[start:start + n] = encoded.astype(dtype)
    if log_every and (start // batch_size) % log_every == 0:
      print(f"features: {start + n}/{len(items)} images -> {path}", flush=True)
  out.flush()
  del out
  os.replace(tmp, path)
  with open(path[:-len(".npy")] + "_dicom_ids.json.tmp", "w") as f:
    json.dump(ids, f)
  os.replace(path[:-len(".npy")] + "_dicom_ids.json.tmp", path[:-len(".npy")] + "_dicom_ids.json")
  return len(items)


class FeatureStore:
  """Read side of one split: `store[dicom_id] -> [N, D] float32`. Opens the file lazily, so it
  pickles cheaply into data-loader workers."""

  def __init__(self, path: str):
    self.path = path
    ids_path = path[:-len(".npy")] + "_dicom_ids.json"
    with open(ids_path) as f:
      self._row = {d: i for i, d in enumerate(json.load(f))}
    self._array: Optional[np.ndarray] = None

  def __getstate__(self):
    return {"path": self.path, "_row": self._row, "_array": None}

  def __len__(self) -> int:
    return len(self._row)

  @property
  def array(self) -> np.ndarray:
    if self._array is None:
      self._array = np.load(self.path, mmap_mode="r")
    return self._array

  def __getitem__(self, dicom_id: str) -> np.ndarray:
    try:
      row = self._row[dicom_id]
    except KeyError:
      raise KeyError(f"dicom id {dicom_id!r} is not in the feature cache {self.path}; the cache "
                     "is older than the dataset: delete it or set config.input.features.dir "
                     "elsewhere") from None
    return np.asarray(self.array[row], np.float32)


def cache_key(encoder_init: str, encoder_config: Mapping[str, Any], dataset: Any) -> str:
  blob = json.dumps([encoder_init, dict(encoder_config), dataset], sort_keys=True, default=str)
  return hashlib.sha1(blob.encode()).hexdigest()[:12]


def directory(config: Any) -> str:
  """The cache directory of a diff_vqa config (see the module docstring)."""
  from locvqa_jax import vqa_init  # pylint: disable=g-import-not-at-top
  feats = config.input.features
  if feats.dir and feats.dir != "auto":
    return feats.dir
  spec = vqa_init.parse_encoder_init(config.init.encoder)
  if spec is None:
    raise ValueError("config.input.features.enabled needs config.init.encoder (a pretraining "
                     "workdir, an npz or a Hugging Face folder): cached features of a random "
                     "encoder would not match the model's own random encoder")
  base = (os.path.join(spec.path, "features_cache") if spec.kind == "workdir"
          else os.path.normpath(spec.path) + ".features_cache")
  version = vqa_init.weights_version(spec)
  dataset = tasks.dataset_fingerprint(config.input.data_dir, DATASET, config.input.res)
  # An HF folder is named as written or with a trailing '/'; one cache for both.
  name = os.path.normpath(spec.path) if spec.kind == "hf" else config.init.encoder
  key = cache_key(f"{name}@{version}", config.model.encoder.to_dict()
                  if hasattr(config.model.encoder, "to_dict") else config.model.encoder,
                  [dataset, feats.dtype])
  return os.path.join(base, f"{config.input.res}_{key}")


def ensure(config: Any, splits: Sequence[str] = ("train", "validation", "test"),
           records_by_split: Optional[Mapping[str, Sequence[Mapping[str, Any]]]] = None) -> str:
  """Computes the splits missing from the cache directory; returns the directory.

  Only process 0 writes (multi-host runs read the same shared path after a barrier).
  """
  from locvqa_jax import vqa_init  # pylint: disable=g-import-not-at-top
  out_dir = directory(config)
  missing = [s for s in splits if not os.path.exists(os.path.join(out_dir, f"{s}.npy"))]
  if missing and jax.process_index() == 0:
    os.makedirs(out_dir, exist_ok=True)
    encoder_config = config.model.encoder.to_dict()
    params = vqa_init.load_encoder_params(config)
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
      json.dump({"encoder_init": config.init.encoder, "encoder_config": encoder_config,
                 "res": config.input.res, "dtype": config.input.features.dtype}, f, indent=1,
                default=str)
    for split in missing:
      records = (records_by_split or {}).get(split)
      if records is None:
        records = tasks.open_split(config.input.data_dir, DATASET, config.input.res, split,
                                   decode_images=False)
      n = compute(encoder_config, params, records, os.path.join(out_dir, f"{split}.npy"),
                  batch_size=config.input.features.batch_size, dtype=config.input.features.dtype,
                  log_every=50)
      print(f"features: {split}: {n} images encoded once into {out_dir}", flush=True)
  if missing and jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices("locvqa_features_cache")
  return out_dir


def open_store(config: Any, split: str,
               records: Optional[Sequence[Mapping[str, Any]]] = None) -> FeatureStore:
  """The FeatureStore of `split`, computing the cache first when needed."""
  out_dir = ensure(config, (split,), None if records is None else {split: records})
  return FeatureStore(os.path.join(out_dir, f"{split}.npy"))
