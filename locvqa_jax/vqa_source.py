"""The trainer's input source for difference VQA (`config.input.pipeline = 'locvqa_jax.vqa_source'`).

Batches follow locvqa_jax/data/vqa_inputs.py (text, mask_ar, mask_loss, question_type,
row_index, valid) with the image pair in one array, which is what diff_vqa.Model reads:

  image: [B, 2, R, R, 1] float32 in [-1, 1]   pixels (index 0 reference, 1 main), or
         [B, 2, N, D] float32                 cached encoder tokens (config.input.features.enabled;
                                              locvqa_jax/features_cache.py), or
         [B, 2, 1, 1] zeros                   config.model.blind (the images are never read)
  task_id: [B] int32 = question_type, so the trainer's `captioning` loss reports a loss per
         question type.

Training reads config.input.question_types (empty: all), each question of type t
config.input.question_type_repeats[t] times per epoch; evaluation always reads every question of
every type once, so all are reported. With config.input.trim_bucket = k > 0 (single process),
text, mask_ar and mask_loss are cut after the batch's longest row, rounded up to a multiple of
k: answers average a fifth of text_len, and padding only costs (the model ignores padded keys,
so the loss is the same); the jitted step then compiles once per width.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import grain.python as grain
import numpy as np

from locvqa_jax import features_cache
from locvqa_jax.data import pipeline
from locvqa_jax.data import tasks as tasks_lib
from locvqa_jax.data import vqa_inputs

QUESTION_TYPES = vqa_inputs.QUESTION_TYPES


def build_tokenizer(config: Any) -> Any:
  """config.tokenizer, else the tokenizer inside the pretraining checkpoint of config.init."""
  from locvqa_jax import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
  if config.tokenizer:
    return tokenizer_lib.Tokenizer.from_file(config.tokenizer)
  from locvqa_jax import checkpointing  # pylint: disable=g-import-not-at-top
  from locvqa_jax import vqa_init  # pylint: disable=g-import-not-at-top
  spec = vqa_init.parse_encoder_init(config.init.encoder)
  if spec is None or spec.kind != "workdir":
    raise ValueError("config.tokenizer is empty and config.init.encoder is not a pretraining "
                     "workdir, so there is no tokenizer: pass --config.tokenizer=PATH")
  return tokenizer_lib.Tokenizer.from_bytes(checkpointing.load_tokenizer_bytes(spec.path,
                                                                               spec.step))


class StackPair(grain.MapTransform):
  """ref_image, main_image [R, R, 1] -> image [2, R, R, 1]; task_id = question_type."""

  def map(self, element: dict[str, Any]) -> dict[str, Any]:
    out = dict(element)
    out["image"] = np.stack([out.pop("ref_image"), out.pop("main_image")])
    out["task_id"] = out["question_type"]
    return out


class PairFromCache(grain.RandomMapTransform):
  """Index item -> one example with cached encoder tokens (or blank images when blind)."""

  def __init__(self, tok: Any, cfg: Mapping[str, Any], store: Optional[Any], train: bool):
    self._tok, self._store, self._train = tok, store, train
    self._cfg = {k: int(cfg[k]) for k in ("max_question_len", "max_answer_len", "text_len")}
    self._swap = float(cfg.get("swap_pairs", 0.0)) if train else 0.0

  def random_map(self, element: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    record, (_, _, k, qtype) = element["record"], element["entry"]
    q = record["questions"]
    swap, answer = vqa_inputs.swap_or_keep(qtype, tasks_lib.as_str(q["answer"][k]), self._swap,
                                           rng)
    out = vqa_inputs.vqa_sequence(tasks_lib.as_str(q["question"][k]), answer, self._tok,
                                  self._cfg)
    if self._store is None:
      out["image"] = np.zeros((2, 1, 1), np.float32)
    else:
      pair = [tasks_lib.as_str(record["ref_dicom_id"]), tasks_lib.as_str(record["main_dicom_id"])]
      out["image"] = np.stack([self._store[d] for d in (pair[::-1] if swap else pair)])
    out["question_type"] = out["task_id"] = np.int32(qtype)
    out["row_index"] = np.int64(q["row_index"][k])
    if not self._train:
      out["valid"] = np.int32(element["valid"])
    return out


class TextFields(Sequence):
  """A split's records reduced to what a cached or blind example reads, each parsed once.

  Such an example needs a record's questions, answers and row indices and its two dicom ids
  (a blind one not even those), but parsing the whole record, image bytes included, costs more
  than the rest of the example, and a training run reads every record a few times per epoch.
  Each loader process keeps the fields of up to `max_records` records, at most a few kB each, so
  a few hundred MB at the default bound on Medical-Diff-VQA's training split; on the quick
  start's data the loader then needs 12 instead of 46 ms a batch.
  """
  _QUESTION_KEYS = ("question", "answer", "row_index")

  def __init__(self, records: Sequence[Mapping[str, Any]], max_records: int = 1 << 16):
    self._records, self._max = records, max_records
    self._kept: dict[int, dict[str, Any]] = {}

  def __len__(self) -> int:
    return len(self._records)

  def __getitem__(self, i: int) -> dict[str, Any]:
    i = int(i)
    fields = self._kept.get(i)
    if fields is None:
      record = self._records[i]
      fields = {k: record[k] for k in ("ref_dicom_id", "main_dicom_id") if k in record}
      fields["questions"] = {k: record["questions"][k] for k in self._QUESTION_KEYS}
      if len(self._kept) < self._max:
        self._kept[i] = fields
    return fields

  def __getstate__(self) -> dict[str, Any]:  # Loader processes start with nothing kept.
    return {"_records": self._records, "_max": self._max, "_kept": {}}


def open_records(config: Any, split: str) -> Sequence[Mapping[str, Any]]:
  return tasks_lib.open_split(config.input.data_dir, features_cache.DATASET, config.input.res,
                              split, decode_images=False)


def loader(config: Any, tok: Any, *, split: str, global_batch_size: int, train: bool,
           seed: int = 0, records: Optional[Sequence[Mapping[str, Any]]] = None,
           question_types: Optional[Sequence[str]] = None,
           shard_options: Optional[grain.ShardOptions] = None) -> grain.DataLoader:
  """A grain DataLoader of difference-VQA batches (module docstring) for `split`.

  Args:
    config: the diff_vqa config (input.*, model.blind, init.encoder).
    records: the split's records (default: the built mimic_diff_vqa split).
    question_types: types to read; default config.input.question_types in training and all
      types in evaluation.
  """
  cfg = config.input
  if question_types is None:
    question_types = tuple(cfg.question_types) if train else ()
  cache_path, given = None, records
  if records is None:
    records = open_records(config, split)
    cache_path = pipeline.index_cache_path(cfg, "vqa", [features_cache.DATASET], split,
                                           {"question_types": sorted(question_types)})
  index = vqa_inputs.build_vqa_index(records, question_types, cache_path)
  if train:
    index = vqa_inputs.repeat_question_types(index, cfg.question_type_repeats)
  blind = bool(config.model.blind)
  if blind or cfg.features.enabled:
    index = index.with_sources({features_cache.DATASET: TextFields(records)})
    store = None if blind else features_cache.open_store(config, split, given)
    ops = [PairFromCache(tok, cfg, store, train)]
  else:
    ops = [vqa_inputs.VqaTransform(tok, cfg, train), StackPair()]
  return pipeline.make_loader(index, ops, global_batch_size=global_batch_size, train=train,
                              seed=seed, worker_count=cfg.worker_count,
                              worker_buffer_size=cfg.worker_buffer_size,
                              shard_options=shard_options,
                              read_threads=int(cfg.get("read_threads", pipeline.READ_THREADS)))


def trim_text(batch: dict[str, np.ndarray], bucket: int) -> dict[str, np.ndarray]:
  """Cuts the [B, L] text arrays after the longest row, rounded up to a multiple of bucket."""
  longest = int((batch["text"] != 0).sum(1).max())
  width = min(batch["text"].shape[1], -(-longest // bucket) * bucket)
  return {k: v[:, :width] if k in ("text", "mask_ar", "mask_loss") else v
          for k, v in batch.items()}


class _Trimmed:
  """A batch iterator (or re-iterable) with `trim_text` applied; keeps get_state/set_state."""

  def __init__(self, inner: Any, bucket: int):
    self._inner, self._bucket = inner, bucket

  def __iter__(self):
    if hasattr(self._inner, "__next__"):
      return self
    return (trim_text(b, self._bucket) for b in self._inner)

  def __next__(self):
    return trim_text(next(self._inner), self._bucket)

  def get_state(self):
    return self._inner.get_state()

  def set_state(self, state):
    self._inner.set_state(state)


def maybe_trim(config: Any, batches: Any) -> Any:
  import jax  # pylint: disable=g-import-not-at-top
  bucket = int(config.input.get("trim_bucket", 0))
  # Every process must cut to the same width; that would need a collective per batch.
  return _Trimmed(batches, bucket) if bucket > 0 and jax.process_count() == 1 else batches


def train_iterator(config: Any, tokenizer: Any, *, global_batch_size: int, seed: int) -> Any:
  return maybe_trim(config, iter(loader(config, tokenizer, split="train",
                                         global_batch_size=global_batch_size, train=True,
                                         seed=seed)))


def eval_batches(config: Any, tokenizer: Any, *, split: str, global_batch_size: int) -> Any:
  return maybe_trim(config, loader(config, tokenizer, split=split,
                                    global_batch_size=global_batch_size, train=False))


def questions_by_row(records: Sequence[Mapping[str, Any]]) -> dict[int, dict[str, Any]]:
  """row_index -> question, reference answer (as in the CSV), type and the pair's ids."""
  out = {}
  for r in tasks_lib.iter_records(records):
    q = r["questions"]
    for k in range(len(q["row_index"])):
      out[int(q["row_index"][k])] = {
          "question": tasks_lib.as_str(q["question"][k]),
          "reference": tasks_lib.as_str(q["answer"][k]),
          "question_type": tasks_lib.as_str(q["question_type"][k]),
          "study_id": tasks_lib.as_str(r["study_id"]), "ref_id": tasks_lib.as_str(r["ref_id"]),
          "main_dicom_id": tasks_lib.as_str(r.get("main_dicom_id", b"")),
          "ref_dicom_id": tasks_lib.as_str(r.get("ref_dicom_id", b""))}
  return out
