"""Answers for batches of difference-VQA questions (greedy or beam), sharded over a mesh.

Used by the validation evaluator, `python -m locvqa_jax.evaluate --workdir` and the benchmarks.
The question prefix is cut from each batch (`decoding.prefix_from_batch`) and its width rounded
up to a multiple of 16, so the jitted decoder compiles for few shapes.
"""

from __future__ import annotations

import functools
from typing import Any, Iterable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from locvqa_jax import decoding

EOS_ID, PAD_ID = 1, 0


def make_decoder(model: Any, *, max_decode_len: int, beam_size: int = 1,
                 length_penalty: float = 1.0, no_repeat_ngram_size: int = 0,
                 use_cache: bool = True):
  """jitted (params, images, prefix [B, P], prefix_len [B]) -> tokens [B, max_decode_len].

  beam_size 1 is greedy decoding (the same tokens as beam search with one beam, cheaper).
  """
  if beam_size <= 1:
    fn = functools.partial(decoding.greedy_decode, model, max_decode_len=max_decode_len,
                           eos_id=EOS_ID, pad_id=PAD_ID, use_cache=use_cache)
  else:
    def fn(params, images, prefix, prefix_len):
      return decoding.beam_search(
          model, params, images, prefix, prefix_len, max_decode_len=max_decode_len,
          beam_size=beam_size, length_penalty=length_penalty,
          no_repeat_ngram_size=no_repeat_ngram_size, eos_id=EOS_ID, pad_id=PAD_ID,
          use_cache=use_cache)[0]
  return jax.jit(fn)


def split_prefix(text: np.ndarray, mask_ar: np.ndarray, bucket: int = 16):
  """(prefix [B, P], prefix_len [B]) of batch rows: bos + question, P a multiple of bucket."""
  has = (mask_ar > 0).any(1)
  prefix_len = np.where(has, np.argmax(mask_ar > 0, axis=1), (text != PAD_ID).sum(1))
  prefix_len = np.maximum(prefix_len, 1).astype(np.int32)
  width = min(text.shape[1], -(-int(prefix_len.max()) // bucket) * bucket)
  prefix = np.where(np.arange(width)[None] < prefix_len[:, None], text[:, :width], PAD_ID)
  return prefix.astype(np.int32), prefix_len


def gather(x: np.ndarray) -> np.ndarray:
  """All processes' rows of a per-process array, in process order."""
  if jax.process_count() == 1:
    return np.asarray(x)
  return np.asarray(multihost_utils.process_allgather(np.asarray(x), tiled=True))


def answer_text(tok: Any, ids: Iterable[int]) -> str:
  """Token ids up to eos -> text (pad, bos and ids past the vocabulary dropped)."""
  out = []
  for i in ids:
    i = int(i)
    if i == EOS_ID:
      break
    if i > 3 and i < tok.vocab_size:
      out.append(i)
  return tok.decode(out)


def predict(decoder: Any, params: Any, batches: Iterable[dict[str, np.ndarray]], tok: Any, *,
            mesh: Optional[jax.sharding.Mesh] = None, limit: int = 0,
            progress: bool = False) -> list[dict[str, Any]]:
  """Decodes every valid question of `batches`.

  Args:
    decoder: from `make_decoder`.
    batches: per-process eval batches of locvqa_jax/vqa_source.py (image, text, mask_ar,
      question_type, row_index, valid).
    mesh: when given, batches are assembled into global arrays sharded over it.
    limit: stop after this many batches (0: all).

  Returns:
    [{'row_index', 'question_type_id', 'position' (row in the global batch), 'prediction',
    'prediction_ids'}] for valid rows, all processes' rows on every process.
  """
  out = []
  it = enumerate(batches)
  if progress:
    import tqdm  # pylint: disable=g-import-not-at-top
    it = tqdm.tqdm(it, desc="decoding", unit="batch")
  for i, batch in it:
    if limit and i >= limit:
      break
    prefix, prefix_len = split_prefix(batch["text"], batch["mask_ar"])
    inputs = {"image": batch["image"], "prefix": prefix, "prefix_len": prefix_len}
    if mesh is not None:
      from locvqa_jax import sharding  # pylint: disable=g-import-not-at-top
      inputs = sharding.make_global_batch(inputs, mesh)
    else:
      inputs = {k: jnp.asarray(v) for k, v in inputs.items()}
    tokens = decoder(params, inputs["image"], inputs["prefix"], inputs["prefix_len"])
    if mesh is not None and jax.process_count() > 1:
      tokens = multihost_utils.process_allgather(tokens, tiled=True)
    tokens = np.asarray(jax.device_get(tokens))
    rows, qtype = gather(batch["row_index"]), gather(batch["question_type"])
    valid = gather(batch.get("valid", np.ones_like(batch["row_index"], np.int32)))
    for r in np.nonzero(valid > 0)[0]:
      ids = tokens[r].tolist()
      out.append({"row_index": int(rows[r]), "question_type_id": int(qtype[r]), "position": int(r),
                  "prediction": answer_text(tok, ids), "prediction_ids": ids})
  return out
