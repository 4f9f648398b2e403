"""Per-token statistics of the frozen encoder's outputs over the training images.

The difference-VQA model standardises every encoder token (`model.normalize_image`,
models/diff_vqa.py `ImageNorm`) with the mean and standard deviation of that token position and
channel over the training split, computed once on a fresh start and stored with the parameters.

Why: the encoder's tokens are dominated by a part that is the same for every radiograph (the
position embedding and the common anatomy carried through the final LayerNorm); what tells one
image from another is a few percent of each token's norm. A linear probe sees the findings once
the features are standardised (tools/probe_encoder.py does exactly that), but a language model
reading the raw tokens first has to learn to subtract the common part, which a short fine-tuning
does not; standardised, the projector receives the differences between images directly.
With the encoder trained as well (`freeze=false`), the statistics stay those of the encoder it
started from.
"""

from __future__ import annotations

import importlib
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

SPLIT = "train"


def token_statistics(chunks: Iterable[np.ndarray], eps: float = 1e-6) -> tuple[np.ndarray,
                                                                              np.ndarray]:
  """Chunks [n_i, N, D] of encoder tokens -> (mean [N, D], 1 / sqrt(var + eps) [N, D]) float32.

  Sums run in float64 chunk by chunk, so a large encoder never holds all images at once.
  """
  count, total, total_sq = 0, None, None
  for chunk in chunks:
    chunk = np.asarray(chunk, np.float64)
    if total is None:
      total, total_sq = np.zeros(chunk.shape[1:]), np.zeros(chunk.shape[1:])
    count += chunk.shape[0]
    total += chunk.sum(0)
    total_sq += np.square(chunk).sum(0)
  if not count:
    raise ValueError("no training images to compute the encoder's token statistics from")
  mean = total / count
  var = np.maximum(total_sq / count - np.square(mean), 0.0)
  return mean.astype(np.float32), (1.0 / np.sqrt(var + eps)).astype(np.float32)


def _records(config: Any) -> Sequence[Mapping[str, Any]]:
  """The training records from the config's input pipeline module (`open_records`)."""
  source = importlib.import_module(config.input.pipeline)
  if not hasattr(source, "open_records"):
    raise ValueError(f"config.input.pipeline {config.input.pipeline!r} has no open_records("
                     "config, split); model.normalize_image needs the training records")
  return source.open_records(config, SPLIT)


def _cached_chunks(config: Any, records: Sequence[Mapping[str, Any]], max_images: int,
                   chunk: int) -> Iterable[np.ndarray]:
  from locvqa_jax import features_cache  # pylint: disable=g-import-not-at-top
  array = features_cache.open_store(config, SPLIT, records).array
  n = min(len(array), max_images)
  for start in range(0, n, chunk):
    yield np.asarray(array[start:min(start + chunk, n)], np.float32)


def _encoded_chunks(config: Any, encoder_params: Any, records: Sequence[Mapping[str, Any]],
                    max_images: int, chunk: int) -> Iterable[np.ndarray]:
  from locvqa_jax import features_cache  # pylint: disable=g-import-not-at-top
  run = features_cache.encoder_fn(config.model.encoder.to_dict())
  encode = lambda images: features_cache.encode_padded(run, encoder_params, images, chunk)
  images = []
  for _, value in features_cache.pair_images(records):
    images.append(features_cache.decode_image(value))
    if len(images) == chunk:
      yield encode(images)
      images = []
    max_images -= 1
    if not max_images:
      break
  if images:
    yield encode(images)


def training_statistics(config: Any, encoder_params: Any, *, max_images: int = 1024,
                        chunk: int = 64,
                        records: Optional[Sequence[Mapping[str, Any]]] = None
                        ) -> tuple[np.ndarray, np.ndarray]:
  """(mean, inverse std) [N, D] of the encoder's tokens over up to `max_images` training images.

  Read from the features cache when config.input.features.enabled (computing the train split
  there first if missing; `encoder_params` is then not used and may be None), otherwise by
  running the encoder with `encoder_params`.
  """
  if records is None:
    records = _records(config)
  if config.input.features.enabled:
    chunks = _cached_chunks(config, records, max_images, chunk)
  else:
    chunks = _encoded_chunks(config, encoder_params, records, max_images, chunk)
  return token_statistics(chunks)
