"""Grain input pipeline for difference VQA: one example per question of a mimic_diff_vqa pair.

A batch (numpy):
  ref_image, main_image: [B, R, R, 1] float32 in [-1, 1] (augmented independently in training)
  text:      [B, L] int32 = bos, question tokens (prefix), answer tokens, eos, pad 0
  mask_ar:   [B, L] int32, 1 on answer tokens and eos
  mask_loss: [B, L] int32, 1 on answer tokens and eos
  question_type: [B] int32 index into QUESTION_TYPES
  row_index: [B] int64, 0-based data row of mimic_pair_questions.csv (EKAID's image id)
  valid:     [B] int32, evaluation only (0 on the padding of the last batch)

Sharding, shuffling, repeat, workers and iterator state are those of `pipeline.make_loader`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping, Optional, Sequence

import grain.python as grain
import ml_collections
import numpy as np

from locvqa_jax import tokenizer as tokenizer_lib
from locvqa_jax.data import augment as augment_lib
from locvqa_jax.data import pipeline
from locvqa_jax.data import tasks as tasks_lib

QUESTION_TYPES = ("abnormality", "presence", "view", "location", "level", "type", "difference")


def vqa_input_config() -> ml_collections.ConfigDict:
  """Defaults of the difference-VQA input (`config.input` of configs/diff_vqa.py)."""
  c = ml_collections.ConfigDict()
  c.data_dir = ""
  c.res = "r128"
  c.question_types = ()          # empty: all seven; else only these
  # Training only: each question of type t is read question_type_repeats[t] times per epoch (an
  # epoch grows accordingly; training length is still config.total_steps).
  c.question_type_repeats = {t: 1 for t in QUESTION_TYPES}
  # Training only: probability that a difference question is read with its two images swapped
  # and its answer mirrored (`swap_difference_answer`); other question types are about the main
  # image and are never swapped.
  c.swap_pairs = 0.0
  c.max_question_len = 40
  c.max_answer_len = 96
  c.text_len = 140               # bos + 40 + 96 + eos, rounded up
  c.augment = ml_collections.ConfigDict(dataclasses.asdict(augment_lib.AugmentConfig()))
  c.worker_count = 0
  c.worker_buffer_size = 2
  c.read_threads = pipeline.READ_THREADS  # grain's read-ahead threads per loader (0: none)
  c.index_cache_dir = "auto"     # '' off; 'auto': <data_dir>/locvqa_index_cache; or a folder
  return c


def build_vqa_index(records: Sequence[Mapping[str, Any]], question_types: Sequence[str] = (),
                    cache_path: Optional[str] = None) -> pipeline.IndexedSource:
  """Rows (0, pair record, question position, question type id), optionally type-filtered."""
  unknown = set(question_types) - set(QUESTION_TYPES)
  if unknown:
    raise ValueError(f"config.input.question_types: unknown {sorted(unknown)}; expected some "
                     f"of {QUESTION_TYPES}")
  entries = pipeline.cached_entries(cache_path, lambda: _vqa_entries(records, question_types))
  return pipeline.IndexedSource({"mimic_diff_vqa": records}, ["mimic_diff_vqa"], entries)


def repeat_question_types(index: pipeline.IndexedSource,
                          repeats: Mapping[str, int]) -> pipeline.IndexedSource:
  """The index with every row of question type t repeated repeats[t] times (training only).

  A training stream that sees the rarer, harder types (e.g. `difference`) more often without
  dropping the others; evaluation always reads each question once.
  """
  entries = index.entries
  factors = np.ones(len(QUESTION_TYPES), np.int64)
  for qt, n in dict(repeats).items():
    if qt not in QUESTION_TYPES:
      raise ValueError(f"config.input.question_type_repeats: unknown type {qt!r}; expected some "
                       f"of {QUESTION_TYPES}")
    if int(n) != n or n < 1:
      raise ValueError(f"config.input.question_type_repeats[{qt!r}] = {n!r}; expected an "
                       "integer >= 1")
    factors[QUESTION_TYPES.index(qt)] = int(n)
  if (factors == 1).all():
    return index
  return index.with_entries(np.repeat(entries, factors[entries[:, 3]], axis=0))


def _vqa_entries(records: Sequence[Mapping[str, Any]],
                 question_types: Sequence[str]) -> np.ndarray:
  keep = set(question_types or QUESTION_TYPES)
  rows = []
  for i, r in enumerate(tasks_lib.iter_records(records)):
    for k, qt in enumerate(r["questions"]["question_type"]):
      qt = tasks_lib.as_str(qt)
      if qt not in QUESTION_TYPES:
        raise ValueError(f"mimic_diff_vqa record {i} question {k}: question_type {qt!r} is not "
                         f"one of {QUESTION_TYPES}")
      if qt in keep:
        rows.append((0, i, k, QUESTION_TYPES.index(qt)))
  return np.asarray(rows, np.int64).reshape(-1, 4)


# Medical-Diff-VQA's level words (level_lib.csv); a level is one or more of them joined by spaces.
LEVEL_WORDS = ("moderately", "moderate", "acute", "mildly", "mild", "small", "severe",
               "moderate to large", "moderate to severe", "mild to moderate", "minimal", "subtle",
               "massive", "minimally", "increasing", "decreasing", "minor")


def _is_level(text: str) -> bool:
  """Whether text is one or more level words (multi-word ones included) joined by spaces."""
  words = text.split(" ")

  @functools.lru_cache(maxsize=None)
  def ok(i: int) -> bool:
    return i == len(words) or any(
        " ".join(words[i:j]) in LEVEL_WORDS and ok(j) for j in range(i + 1, len(words) + 1))
  return bool(text) and ok(0)


def _list_sentence(prefix_one: str, prefix_many: str, items: str) -> str:
  head = prefix_many if "," in items else prefix_one
  return f"the main image {head} of {items} than the reference image. "


def swap_difference_answer(answer: str) -> Optional[str]:
  """The answer to the same difference question with the two images swapped, or None.

  Mirrors the Medical-Diff-VQA grammar (DATA_FORMATS.md 3.3): a level change from A to B
  becomes B to A, added findings become missing ones and back, `nothing has changed.` stays;
  the sentences keep the grammar's order (levels, added, missing) and trailing spaces. None when
  the answer is outside that grammar or a level change cannot be split into two levels
  unambiguously (`mild to moderate to severe`), so such examples are simply not swapped.
  """
  # The grammar's sentence patterns live with the finding parser; imported here so the input
  # pipeline does not load the evaluation package (and its scorers) unless pairs are swapped.
  from locvqa_jax.evaluation import findings  # pylint: disable=g-import-not-at-top
  text = " ".join(str(answer).split())
  if text == "nothing has changed.":
    return "nothing has changed."
  levels, added, missing = [], "", ""
  for sentence in (s.strip() for s in text.split(".")):
    if not sentence:
      continue
    level, plus, minus = (r.match(sentence) for r in (findings.LEVEL_RE, findings.ADDED_RE,
                                                      findings.MISSING_RE))
    if level:  # Its greedy a/b split is one reading of "from A to B"; try every split.
      parts = f"{level.group('a')} to {level.group('b')}".split(" to ")
      splits = [(" to ".join(parts[:i]), " to ".join(parts[i:])) for i in range(1, len(parts))]
      splits = [(a, b) for a, b in splits if _is_level(a) and _is_level(b)]
      if len(splits) != 1:
        return None
      a, b = splits[0]
      levels.append(f"the level of {level.group('finding')} has changed from {b} to {a}. ")
    elif plus and not added:
      added = plus.group("list")
    elif minus and not missing:
      missing = minus.group("list")
    else:
      return None
  out = "".join(levels)
  if missing:  # What the reference had and the main image lacks is now the addition.
    out += _list_sentence("has an additional finding", "has additional findings", missing)
  if added:
    out += _list_sentence("is missing the finding", "is missing the findings", added)
  return out or None


def swap_or_keep(question_type: int, answer: str, p: float,
                 rng: np.random.Generator) -> tuple[bool, str]:
  """(swap the images?, answer): a difference question is swapped with probability p."""
  if p <= 0 or QUESTION_TYPES[question_type] != "difference" or rng.random() >= p:
    return False, answer
  swapped = swap_difference_answer(answer)
  return (False, answer) if swapped is None else (True, swapped)


def vqa_sequence(question: str, answer: str, tok: tokenizer_lib.Tokenizer,
                 cfg: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """text, mask_ar, mask_loss [L]: the question is the prefix, the answer the target."""
  q = tok.encode(question)[:cfg["max_question_len"]]
  a = tok.encode(answer)[:cfg["max_answer_len"]]
  return tasks_lib.assemble(q, a, cfg["text_len"])


class VqaTransform(grain.RandomMapTransform):
  """Index item -> one unbatched VQA example (see the module docstring)."""

  def __init__(self, tok: tokenizer_lib.Tokenizer, cfg: Mapping[str, Any], train: bool):
    self._tok = tok
    self._train = train
    self._cfg = {k: int(cfg[k]) for k in ("max_question_len", "max_answer_len", "text_len")}
    self._aug = augment_lib.AugmentConfig.from_config(cfg["augment"] if train else None)
    self._swap = float(cfg.get("swap_pairs", 0.0)) if train else 0.0

  def random_map(self, element: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    record, (_, _, k, qtype) = element["record"], element["entry"]
    q = record["questions"]
    swap, answer = swap_or_keep(qtype, tasks_lib.as_str(q["answer"][k]), self._swap, rng)
    out = {}
    for key in ("ref_image", "main_image"):
      image = augment_lib.decode_image(record[key])
      out[key], _ = augment_lib.augment(image, np.zeros((0, 4)), rng, self._aug)
    if swap:
      out["ref_image"], out["main_image"] = out["main_image"], out["ref_image"]
    out.update(vqa_sequence(tasks_lib.as_str(q["question"][k]), answer, self._tok, self._cfg))
    out["question_type"] = np.int32(qtype)
    out["row_index"] = np.int64(q["row_index"][k])
    if not self._train:
      out["valid"] = np.int32(element["valid"])
    return out


def vqa_loader(cfg: Mapping[str, Any], tok: tokenizer_lib.Tokenizer, *, split: str,
               global_batch_size: int, train: bool, seed: int = 0,
               records: Optional[Sequence[Mapping[str, Any]]] = None,
               shard_options: Optional[grain.ShardOptions] = None,
               worker_count: Optional[int] = None) -> grain.DataLoader:
  """Difference-VQA DataLoader for `split` (records default: the built mimic_diff_vqa split)."""
  cache_path = None
  question_types = tuple(cfg.get("question_types", ()))
  if records is None:
    records = tasks_lib.open_split(cfg["data_dir"], "mimic_diff_vqa", cfg["res"], split,
                                   decode_images=False)
    cache_path = pipeline.index_cache_path(cfg, "vqa", ["mimic_diff_vqa"], split,
                                           {"question_types": sorted(question_types)})
  index = build_vqa_index(records, question_types, cache_path)
  print(f"vqa index: split={split} questions={index.num_real} pairs={len(records)}")
  return pipeline.make_loader(
      index, [VqaTransform(tok, cfg, train)], global_batch_size=global_batch_size, train=train,
      seed=seed, worker_count=cfg.get("worker_count", 0) if worker_count is None else worker_count,
      worker_buffer_size=cfg.get("worker_buffer_size", 2), shard_options=shard_options,
      read_threads=int(cfg.get("read_threads", pipeline.READ_THREADS)))
