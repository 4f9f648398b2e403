"""Grain input pipeline for pretraining: index, shard, shuffle, decode, augment, tokenize, batch.

    loader = pipeline.pretrain_loader(config.input, tok, split="train", global_batch_size=32,
                                      train=True, seed=0)
    it = iter(loader)                       # grain DataLoaderIterator
    batch = next(it)                        # dict of numpy arrays, CONTRACTS D

Each process reads its own shard (grain `ShardByJaxProcess`) and gets `global_batch_size /
process_count` examples per batch. Training repeats forever with a seeded shuffle and drops the
remainder; evaluation is one pass in order, its last batch padded with copies marked `valid=0`
(eval batches carry `valid: [B] int32`, so every batch has the same shape on a mesh, and the
boxes of each row's phrase, `phrase_boxes: [B, MAX_PHRASE_BOXES, 4]`, see `phrase_boxes_of`).

Iterator state: `it.get_state()` / `it.set_state(b)` (bytes), or as an orbax item:
`grain.checkpoint.CheckpointSave(it)` / `grain.checkpoint.CheckpointRestore(it)`. Random choices
(task, phrase, augmentation) come from grain's per-record seed, so a restored iterator and any
worker count give the same batches.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from typing import Any, Callable, Mapping, Optional, Sequence

from absl import flags
import grain.python as grain
import numpy as np

from locvqa_jax import tokenizer as tokenizer_lib
from locvqa_jax.data import augment as augment_lib
from locvqa_jax.data import tasks as tasks_lib

Source = Sequence[Mapping[str, Any]]
# grain's ReadOptions.num_threads default: read-ahead threads per loader process.
READ_THREADS = 16


class IndexedSource:
  """Random-access view of rows `entries[k] = (source, record, aux...)` over named sources.

  Item k is `{"record": sources[names[source]][record], "entry": entries[k], "valid": 1}`; items
  past the end (evaluation padding up to `padded_len`) repeat item 0 with `valid: 0`.
  """

  def __init__(self, sources: Mapping[str, Source], names: Sequence[str], entries: np.ndarray,
               padded_len: Optional[int] = None):
    if len(entries) == 0:
      raise ValueError(f"no examples for sources {list(names)}: the index is empty (check the "
                       "split, the VQA leakage filter and the task list)")
    self._sources = dict(sources)
    self._names = tuple(names)
    self._entries = np.asarray(entries, np.int64)
    self._len = max(padded_len or 0, len(self._entries))

  @property
  def num_real(self) -> int:
    return len(self._entries)

  def __len__(self) -> int:
    return self._len

  def __getitem__(self, k: int) -> dict[str, Any]:
    k = int(k)
    valid = int(k < len(self._entries))
    row = self._entries[k if valid else 0]
    record = self._sources[self._names[row[0]]][int(row[1])]
    return {"record": record, "entry": row, "valid": valid}

  @property
  def entries(self) -> np.ndarray:
    return self._entries

  def with_padding(self, padded_len: int) -> "IndexedSource":
    return IndexedSource(self._sources, self._names, self._entries, padded_len)

  def with_sources(self, sources: Mapping[str, Source]) -> "IndexedSource":
    """The same rows over other sources of the same records (e.g. a lighter view of them)."""
    return IndexedSource({**self._sources, **sources}, self._names, self._entries, self._len)

  def with_entries(self, entries: np.ndarray) -> "IndexedSource":
    """The same sources with other rows (no evaluation padding: for training indexes)."""
    return IndexedSource(self._sources, self._names, entries)

  def __repr__(self) -> str:
    # Grain compares this string when restoring an iterator, so it fingerprints the index.
    crc = zlib.crc32(self._entries.tobytes())
    return f"IndexedSource(names={self._names}, len={self._len}, entries_crc={crc:08x})"


def make_loader(source: IndexedSource, operations: Sequence[Any], *, global_batch_size: int,
                train: bool, seed: int, worker_count: int = 0, worker_buffer_size: int = 2,
                shard_options: Optional[grain.ShardOptions] = None,
                read_threads: int = READ_THREADS) -> grain.DataLoader:
  """A grain DataLoader: shard, (shuffle, repeat), `operations` per example, batch.

  `global_batch_size` is split over the shards; `shard_options` defaults to one shard per JAX
  process. Evaluation pads the index so that every shard gets whole batches. `read_threads` is
  grain's ReadOptions.num_threads (`READ_THREADS` by default): threads per loader process that
  read and transform examples ahead; 0 does it in the loader's own thread, which is faster where
  an example is cheap (grain's read-ahead then costs more than the work). The batches are the
  same for any value.
  """
  if read_threads < 0:
    raise ValueError(f"read_threads={read_threads}: expected >= 0")
  shard_options = shard_options or grain.ShardByJaxProcess(drop_remainder=train)
  shards = shard_options.shard_count
  if global_batch_size % shards:
    raise ValueError(f"global_batch_size={global_batch_size} is not divisible by the "
                     f"{shards} data shards (JAX processes)")
  batch = global_batch_size // shards
  if not train:
    padded = -(-len(source) // global_batch_size) * global_batch_size
    source = source.with_padding(padded)
  sampler = grain.IndexSampler(num_records=len(source), shard_options=shard_options,
                               shuffle=train, num_epochs=None if train else 1, seed=seed)
  ops = list(operations) + [grain.Batch(batch_size=batch, drop_remainder=train)]
  if worker_count and not flags.FLAGS.is_parsed():
    # grain 0.2.18 reads an absl flag when it starts workers and fails in programs that do not
    # parse absl flags (google/grain#1355); the flag defaults are what we want.
    flags.FLAGS.mark_as_parsed()
  return grain.DataLoader(data_source=source, sampler=sampler, operations=ops,
                          worker_count=worker_count, worker_buffer_size=worker_buffer_size,
                          shard_options=shard_options,
                          read_options=grain.ReadOptions(num_threads=read_threads))


# -- pretraining --------------------------------------------------------------------------------

_CAP_BIT = 1
_REGION_BIT = 2
# Evaluation rows carry up to this many boxes of their phrase in the image (`phrase_boxes`).
MAX_PHRASE_BOXES = 8


def _task_settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
  tasks = tuple(cfg["tasks"])
  weights = tuple(float(w) for w in cfg["task_weights"])
  if len(weights) != len(tasks) or min(weights, default=0) < 0 or sum(weights) <= 0:
    raise ValueError(f"config.input.task_weights={weights} must give one non-negative weight "
                     f"per task in config.input.tasks={tasks}, not all zero")
  if cfg["tasks_per_image"] not in ("one", "all"):
    raise ValueError(f"config.input.tasks_per_image={cfg['tasks_per_image']!r}: expected "
                     "'one' or 'all'")
  templates = dict(cfg["templates"])
  tasks_lib.check_templates(templates, tasks)
  return {"tasks": tasks, "task_weights": weights, "tasks_per_image": cfg["tasks_per_image"],
          "templates": templates, "max_caption_len": int(cfg["max_caption_len"]),
          "max_phrase_len": int(cfg["max_phrase_len"]), "text_len": int(cfg["text_len"])}


def build_pretrain_index(sources: Mapping[str, Source], cfg: Mapping[str, Any],
                         excluded_studies: set[str] = frozenset(),
                         log: Callable[[str], None] = print,
                         cache_path: Optional[str] = None) -> IndexedSource:
  """Index of pretraining examples over `chest_imagenome` (and `mimic_cxr` for extra CAP).

  Rows are (source, record, task, feasible): task is an index into cfg.tasks ('all' mode) or -1
  ('one' mode: drawn per example among the feasible task families, a bit mask). Studies in
  `excluded_studies` are dropped and counted. With `cache_path`, the rows are read from there
  when present and written there after a scan.
  """
  names = [n for n in ("chest_imagenome", "mimic_cxr") if n in sources]
  entries = cached_entries(
      cache_path, lambda: _pretrain_entries(sources, cfg, excluded_studies, log), log)
  return IndexedSource(sources, names, entries)


def _pretrain_entries(sources: Mapping[str, Source], cfg: Mapping[str, Any],
                      excluded_studies: set[str], log: Callable[[str], None]) -> np.ndarray:
  """The scan behind `build_pretrain_index`: reads every record's text and boxes once."""
  st = _task_settings(cfg)
  tasks = st["tasks"]
  names = [n for n in ("chest_imagenome", "mimic_cxr") if n in sources]
  rows, stats, dicoms = [], dict.fromkeys(
      ("chest_imagenome", "mimic_cxr (extra CAP)", "leaky studies dropped", "images dropped",
       "boxes dropped (empty after clipping)"), 0), set()
  leaky = set()

  def add(src: int, i: int, feasible: int):
    if st["tasks_per_image"] == "one":
      if any(_family_bit(t) & feasible for t in tasks):
        rows.append((src, i, -1, feasible))
      return
    rows.extend((src, i, t, feasible) for t, name in enumerate(tasks)
                if _family_bit(name) & feasible)

  if "chest_imagenome" in sources:
    src = names.index("chest_imagenome")
    for i, r in enumerate(tasks_lib.iter_records(sources["chest_imagenome"])):
      dicoms.add(tasks_lib.as_str(r.get("dicom_id", b"")))
      study = tasks_lib.as_str(r["study_id"])
      if study in excluded_studies:
        leaky.add(study)
        stats["images dropped"] += 1
        continue
      pairs, dropped = tasks_lib.region_pairs(r)
      stats["boxes dropped (empty after clipping)"] += dropped
      feasible = (_CAP_BIT if tasks_lib.cap_text(r) else 0) | (_REGION_BIT if pairs else 0)
      stats["chest_imagenome"] += 1
      add(src, i, feasible)
  if "mimic_cxr" in sources and "cap" in tasks and cfg.get("cap_from_mimic_cxr", True):
    src = names.index("mimic_cxr")
    views = set(cfg.get("cap_views", ("PA", "AP")))
    for i, r in enumerate(tasks_lib.iter_records(sources["mimic_cxr"])):
      if (tasks_lib.as_str(r.get("dicom_id", b"")) in dicoms
          or tasks_lib.as_str(r.get("view_position", b"")) not in views):
        continue
      study = tasks_lib.as_str(r["study_id"])
      if study in excluded_studies:
        leaky.add(study)
        stats["images dropped"] += 1
        continue
      if tasks_lib.cap_text(r):
        stats["mimic_cxr (extra CAP)"] += 1
        add(src, i, _CAP_BIT)
  stats["leaky studies dropped"] = len(leaky)
  log("pretraining index: " + ", ".join(f"{k}={v}" for k, v in stats.items())
      + f", examples={len(rows)}")
  return np.asarray(rows, np.int64).reshape(-1, 4)


def cached_entries(cache_path: Optional[str], build: Callable[[], np.ndarray],
                   log: Callable[[str], None] = print) -> np.ndarray:
  """`build()`, or its earlier result stored at `cache_path` (.npy); None disables the cache."""
  if cache_path and os.path.exists(cache_path):
    entries = np.load(cache_path)
    log(f"index: {len(entries)} rows from {cache_path}")
    return entries
  entries = build()
  if cache_path:
    tmp = f"{cache_path}.{os.getpid()}.tmp"
    try:
      os.makedirs(os.path.dirname(cache_path), exist_ok=True)
      with open(tmp, "wb") as f:
        np.save(f, entries)
      os.replace(tmp, cache_path)  # atomic: processes racing on one file all see a whole one
    except OSError as e:
      log(f"index cache {cache_path} not written: {e}")
  return entries


def cache_dir(cfg: Mapping[str, Any]) -> Optional[str]:
  """cfg.index_cache_dir resolved: None when off, 'auto' -> `<data_dir>/locvqa_index_cache`."""
  where = cfg.get("index_cache_dir", "auto")
  if where == "auto":
    return os.path.join(cfg["data_dir"], "locvqa_index_cache")
  return where or None


def index_cache_path(cfg: Mapping[str, Any], kind: str, datasets: Sequence[str], split: str,
                     extra: Mapping[str, Any]) -> Optional[str]:
  """Cache file of an index over built datasets, keyed by what the index depends on.

  cfg.index_cache_dir: '' disables the cache, 'auto' is `<data_dir>/locvqa_index_cache`. The key
  holds each dataset's directory and the modification time of its dataset_info.json, so a
  rebuilt dataset never reuses a stale index.
  """
  where = cache_dir(cfg)
  if not where:
    return None
  key = {"kind": kind, "split": split, **extra}
  for name in datasets:
    key[name] = tasks_lib.dataset_fingerprint(cfg["data_dir"], name, cfg["res"])
  digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
  return os.path.join(where, f"{kind}_{split}_{digest[:16]}.npy")


def region_mean_boxes(cfg: Mapping[str, Any], *, split: str = "train",
                      records: Optional[Source] = None,
                      excluded_studies: Optional[set[str]] = None) -> np.ndarray:
  """Mean box of each Chest ImaGenome region over a split: the baseline that box tasks must beat.

  Args:
    cfg: the input config (data_dir, res, drop_vqa_eval_studies, index_cache_dir).
    split: split whose `objects` boxes are averaged (clipped to the frame, empty ones skipped).
    records: chest_imagenome records (default: the built split; the result is then cached).
    excluded_studies: as in `pretrain_loader`.

  Returns:
    [36, 4] float32 (ymin, xmin, ymax, xmax), rows in `tasks.REGION_NAMES` order; NaN for a
    region that never has a box.
  """
  cache_path = None
  if records is None:
    records = tasks_lib.open_split(cfg["data_dir"], "chest_imagenome", cfg["res"], split,
                                   decode_images=False)
  if excluded_studies is None:
    excluded_studies = (tasks_lib.vqa_eval_study_ids(cfg["data_dir"], cfg["res"], cache_dir(cfg))
                        if cfg.get("drop_vqa_eval_studies", True) else set())
    cache_path = index_cache_path(cfg, "region_boxes", ["chest_imagenome"], split, {
        "excluded": hashlib.sha1("\n".join(sorted(excluded_studies)).encode()).hexdigest()})

  def scan() -> np.ndarray:
    sums = np.zeros((len(tasks_lib.REGION_NAMES), 5))
    for r in tasks_lib.iter_records(records):
      if tasks_lib.as_str(r["study_id"]) in excluded_studies:
        continue
      objects = r.get("objects") or {}
      for name, box in zip(objects.get("bbox_name", ()), tasks_lib.as_boxes(objects.get("bbox"))):
        k, b = tasks_lib.REGION_INDEX.get(tasks_lib.as_str(name)), tasks_lib.clip_box(box)
        if k is not None and b is not None:
          sums[k] += (*b, 1.0)
    return sums

  sums = cached_entries(cache_path, scan, log=lambda _: None)
  with np.errstate(invalid="ignore", divide="ignore"):
    return (sums[:, :4] / sums[:, 4:]).astype(np.float32)


def _family_bit(task: str) -> int:
  return _CAP_BIT if task == "cap" else _REGION_BIT


class PretrainTransform(grain.RandomMapTransform):
  """Index item -> one example of CONTRACTS D (unbatched): image [R, R, 1] float32, text [L]..."""

  def __init__(self, tok: tokenizer_lib.Tokenizer, cfg: Mapping[str, Any], train: bool):
    self._tok = tok
    self._train = train
    self._st = _task_settings(cfg)
    self._aug = augment_lib.AugmentConfig.from_config(cfg["augment"] if train else None)
    self._weights = np.asarray(self._st["task_weights"])
    self._bits = np.asarray([_family_bit(t) for t in self._st["tasks"]])

  def random_map(self, element: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    record, (_, _, task, feasible) = element["record"], element["entry"]
    if task < 0:
      w = self._weights * ((self._bits & feasible) > 0)
      task = rng.choice(len(w), p=w / w.sum())
    name = self._st["tasks"][task]
    image = augment_lib.decode_image(record["image"])
    phrase_boxes = None
    if name == "cap":
      image, _ = augment_lib.augment(image, np.zeros((0, 4)), rng, self._aug)
      seq = tasks_lib.task_sequence(name, self._tok, self._st, report=tasks_lib.cap_text(record))
    else:
      pairs, _ = tasks_lib.region_pairs(record)
      phrase, bbox_name, box = pairs[rng.integers(len(pairs))]
      image, boxes = augment_lib.augment(image, box[None], rng, self._aug)
      seq = tasks_lib.task_sequence(name, self._tok, self._st, phrase=phrase,
                                    bbox_name=bbox_name, box=boxes[0])
      if not self._train:  # Evaluation is not augmented: the record's boxes are the truth.
        phrase_boxes = phrase_boxes_of(pairs, phrase, box)
    out = {"image": image, **seq}
    if not self._train:
      out["valid"] = np.int32(element["valid"])
      out["phrase_boxes"] = (np.zeros((MAX_PHRASE_BOXES, 4), np.float32) if phrase_boxes is None
                             else phrase_boxes)
    return out


def phrase_boxes_of(pairs: Sequence[tuple[str, str, np.ndarray]], phrase: str,
                    box: np.ndarray) -> np.ndarray:
  """[MAX_PHRASE_BOXES, 4]: `box`, then the image's other boxes of `phrase`, zero-padded.

  A finding sentence linked to several regions ("No pneumothorax." to both lungs) is one
  region pair per region; a prediction for the sentence is right when it finds any of them.
  Beyond MAX_PHRASE_BOXES boxes the rest are left out.
  """
  out = np.zeros((MAX_PHRASE_BOXES, 4), np.float32)
  others = [b for text, _, b in pairs if text == phrase and not np.array_equal(b, box)]
  for k, b in enumerate([box, *others][:MAX_PHRASE_BOXES]):
    out[k] = b
  return out


def open_pretrain_sources(cfg: Mapping[str, Any], split: str) -> dict[str, Source]:
  """The built chest_imagenome (and mimic_cxr) split, images left as PNG bytes for the workers."""
  names = ["chest_imagenome"]
  if "cap" in cfg["tasks"] and cfg.get("cap_from_mimic_cxr", True):
    names.append("mimic_cxr")
  return {n: tasks_lib.open_split(cfg["data_dir"], n, cfg["res"], split, decode_images=False)
          for n in names}


def pretrain_loader(cfg: Mapping[str, Any], tok: tokenizer_lib.Tokenizer, *, split: str,
                    global_batch_size: int, train: bool, seed: int = 0,
                    sources: Optional[Mapping[str, Source]] = None,
                    excluded_studies: Optional[set[str]] = None,
                    shard_options: Optional[grain.ShardOptions] = None,
                    worker_count: Optional[int] = None) -> grain.DataLoader:
  """Pretraining DataLoader for `split`: CONTRACTS D batches (+ `valid`, `phrase_boxes` in eval).

  Args:
    cfg: the input config (`tasks.pretrain_input_config()` keys).
    tok: tokenizer.
    split: 'train', 'validation' or 'test'.
    global_batch_size: examples per step over all processes.
    train: shuffle, repeat, augment and drop the remainder; else one ordered, padded pass with
      cfg.eval_tasks_per_image ('all' by default) instead of cfg.tasks_per_image.
    seed: shuffle and per-example randomness.
    sources: name -> random-access records (default: the built datasets in cfg.data_dir, whose
      index is cached per cfg.index_cache_dir).
    excluded_studies: study ids left out (default: the VQA validation/test studies when
      cfg.drop_vqa_eval_studies, else none).
    shard_options: default one shard per JAX process.
    worker_count: grain worker processes (default cfg.worker_count; 0 = in process).
  """
  if not train:  # evaluation scores every task on every image by default
    cfg = {**{k: cfg[k] for k in cfg.keys()},
           "tasks_per_image": cfg.get("eval_tasks_per_image", "all")}
  opened = sources is None
  if opened:
    sources = open_pretrain_sources(cfg, split)
  if excluded_studies is None:
    excluded_studies = (tasks_lib.vqa_eval_study_ids(cfg["data_dir"], cfg["res"], cache_dir(cfg))
                        if cfg.get("drop_vqa_eval_studies", True) else set())
  cache_path = None
  if opened:
    cache_path = index_cache_path(cfg, "pretrain", sorted(sources), split, {
        "tasks": list(cfg["tasks"]), "tasks_per_image": cfg["tasks_per_image"],
        "cap_from_mimic_cxr": cfg.get("cap_from_mimic_cxr", True),
        "cap_views": sorted(cfg.get("cap_views", ("PA", "AP"))),
        "excluded": hashlib.sha1("\n".join(sorted(excluded_studies)).encode()).hexdigest()})
  index = build_pretrain_index(sources, cfg, excluded_studies, cache_path=cache_path)
  return make_loader(
      index, [PretrainTransform(tok, cfg, train)], global_batch_size=global_batch_size,
      train=train, seed=seed,
      worker_count=cfg.get("worker_count", 0) if worker_count is None else worker_count,
      worker_buffer_size=cfg.get("worker_buffer_size", 2), shard_options=shard_options)
