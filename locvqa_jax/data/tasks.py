"""Pretraining tasks CAP, AREF, GCAP, CAREF: prefix/suffix token sequences and their masks.

A sequence is `bos, prefix, suffix, eos, pad...` (CONTRACTS D). Each task's prefix and suffix are
templates (config values) over three placeholders: `{report}` (findings + impression),
`{phrase}` (a Chest ImaGenome phrase or region name) and `{loc}` (the region box as four location
tokens). Defaults (DESIGN.md):

  task   prefix               suffix
  cap    <cap>                {report}
  aref   <aref>               {phrase} {loc}
  gcap   <gcap>               {loc} {phrase}
  caref  <caref> {phrase}     {loc}

Contents are truncated (reports to `max_caption_len` tokens, phrases to `max_phrase_len`) before
the template is assembled, so location tokens are never cut. Also here: the 36 Chest ImaGenome
region names, the phrase rules, reading the built datasets' text, and the VQA leakage filter.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import string
from typing import Any, Iterator, Mapping, Optional, Sequence

import ml_collections
import numpy as np

from locvqa_jax import tokenizer as tokenizer_lib
from locvqa_jax.data import augment

TASKS = ("cap", "aref", "gcap", "caref")
DEFAULT_TEMPLATES = {
    "cap_prefix": "<cap>", "cap_suffix": "{report}",
    "aref_prefix": "<aref>", "aref_suffix": "{phrase} {loc}",
    "gcap_prefix": "<gcap>", "gcap_suffix": "{loc} {phrase}",
    "caref_prefix": "<caref> {phrase}", "caref_suffix": "{loc}",
}
PLACEHOLDERS = ("report", "phrase", "loc")

# Chest ImaGenome `bbox_name` values in DATA_FORMATS.md 2.4 order; `region_id` indexes this.
REGION_NAMES = (
    "right lung", "right upper lung zone", "right mid lung zone", "right lower lung zone",
    "right hilar structures", "right apical zone", "right costophrenic angle",
    "right cardiophrenic angle", "right hemidiaphragm", "left lung", "left upper lung zone",
    "left mid lung zone", "left lower lung zone", "left hilar structures", "left apical zone",
    "left costophrenic angle", "left hemidiaphragm", "trachea", "spine", "right clavicle",
    "left clavicle", "aortic arch", "mediastinum", "upper mediastinum", "svc",
    "cardiac silhouette", "left cardiac silhouette", "right cardiac silhouette",
    "cavoatrial junction", "right atrium", "descending aorta", "carina", "left upper abdomen",
    "right upper abdomen", "abdomen", "left cardiophrenic angle",
)
REGION_INDEX = {n: i for i, n in enumerate(REGION_NAMES)}
DATASETS = ("mimic_cxr", "chest_imagenome", "mimic_diff_vqa")
IMAGE_KEYS = ("image", "main_image", "ref_image")


def pretrain_input_config() -> ml_collections.ConfigDict:
  """Defaults of the pretraining input (`config.input` of configs/pretrain_locca.py)."""
  c = ml_collections.ConfigDict()
  c.data_dir = ""               # TFDS data_dir holding the built datasets
  c.res = "r128"                # builder config: r128, r224 or r448
  c.tasks = TASKS               # task_id = index in this tuple
  c.task_weights = (1.0, 1.0, 1.0, 1.0)
  c.tasks_per_image = "one"     # 'one': sample one task per image by weight; 'all': every task
  c.eval_tasks_per_image = "all"
  c.templates = ml_collections.ConfigDict(dict(DEFAULT_TEMPLATES))
  c.max_caption_len = 192
  c.max_phrase_len = 48
  c.text_len = 196              # bos + <cap> + 192 report tokens + eos, rounded up
  c.drop_vqa_eval_studies = True
  c.cap_from_mimic_cxr = True   # CAP also on MIMIC-CXR images without a scene graph
  c.cap_views = ("PA", "AP")    # views of those extra CAP images
  c.augment = ml_collections.ConfigDict(dataclasses.asdict(augment.AugmentConfig()))
  c.worker_count = 0
  c.worker_buffer_size = 2
  c.index_cache_dir = "auto"    # '' off; 'auto': <data_dir>/locvqa_index_cache; or a folder
  return c


# -- decoded tfds values ------------------------------------------------------------------------

def as_str(value: Any) -> str:
  """A tfds Text value (bytes from data_source, or str) -> str."""
  return value.decode("utf-8") if isinstance(value, (bytes, np.bytes_)) else str(value)


def normalize_ws(text: str) -> str:
  return " ".join(text.split())


def as_boxes(value: Any) -> np.ndarray:
  """A decoded Sequence(BBoxFeature): list of [4] arrays, BBox tuples or [N, 4] -> [N, 4] f32."""
  if value is None or len(value) == 0:  # pylint: disable=g-explicit-length-test
    return np.zeros((0, 4), np.float32)
  return np.asarray([tuple(b) for b in value], np.float32).reshape(-1, 4)


def clip_box(box: Sequence[float]) -> Optional[np.ndarray]:
  """Box clipped to the frame [0, 1]; None when empty after clipping."""
  b = np.clip(np.asarray(box, np.float32), 0.0, 1.0)
  if b[2] <= b[0] or b[3] <= b[1]:
    return None
  return b


_SECTION = re.compile(r"(?:^|\n)[ \t]*([A-Z][A-Z ()/,-]*):")


def findings_impression(report: str) -> str:
  """Findings + impression of a MIMIC report text; the last paragraph when it has neither."""
  heads = [(m.group(1).strip(), m.start(), m.end()) for m in _SECTION.finditer(report)]
  parts = {}
  for k, (name, _, end) in enumerate(heads):
    body = report[end:heads[k + 1][1] if k + 1 < len(heads) else len(report)]
    # Prefixes also catch the misspellings of real reports (IMPRESSON, FINDNGS, IMPRESSIONS).
    key = ("impression" if name.startswith(("IMPRES", "CONCLUSION")) else
           "findings" if name.startswith(("FINDING", "FINDNG")) else None)
    if key and body.strip():
      parts[key] = normalize_ws(body)
  if parts:
    return " ".join(parts[k] for k in ("findings", "impression") if k in parts)
  paragraphs = [p for p in re.split(r"\n\s*\n", report) if p.strip()]
  return normalize_ws(paragraphs[-1]) if paragraphs else ""


def cap_text(record: Mapping[str, Any]) -> str:
  """CAP target text of a mimic_cxr or chest_imagenome record (findings + impression)."""
  if "findings" in record:
    text = normalize_ws(as_str(record["findings"]) + " " + as_str(record["impression"]))
    if text:
      return text
  return findings_impression(as_str(record.get("report", b"")))


def region_pairs(record: Mapping[str, Any]) -> tuple[list[tuple[str, str, np.ndarray]], int]:
  """(phrase, bbox_name, box) pairs of a chest_imagenome record, and how many boxes were dropped.

  One pair per (phrase, region) entry; every region of `objects` that no phrase mentions gives
  the pair (region name, region name, box). Boxes are clipped to the frame; empty ones dropped.
  """
  pairs, dropped, named = [], 0, set()
  phrases = record.get("phrases") or {}
  for text, name, box in zip(phrases.get("text", ()), phrases.get("bbox_name", ()),
                             as_boxes(phrases.get("bbox"))):
    name = as_str(name)
    named.add(name)
    b, text = clip_box(box), normalize_ws(as_str(text))
    if b is None:
      dropped += 1
    elif text:
      pairs.append((text, name, b))
  objects = record.get("objects") or {}
  for name, box in zip(objects.get("bbox_name", ()), as_boxes(objects.get("bbox"))):
    name = as_str(name)
    if name in named:
      continue
    b = clip_box(box)
    if b is None:
      dropped += 1
    else:
      pairs.append((name, name, b))
  return pairs, dropped


# -- sequences ----------------------------------------------------------------------------------

def check_templates(templates: Mapping[str, str], tasks: Sequence[str]) -> None:
  """Raises naming the key when a task's template is missing or uses an unknown placeholder."""
  for task in tasks:
    if task not in TASKS:
      raise ValueError(f"config.input.tasks: unknown task {task!r}; expected some of {TASKS}")
    for part in ("prefix", "suffix"):
      key = f"{task}_{part}"
      if key not in templates:
        raise ValueError(f"config.input.templates.{key} is missing")
      for _, field, _, _ in string.Formatter().parse(templates[key]):
        if field is not None and field not in PLACEHOLDERS:
          raise ValueError(f"config.input.templates.{key}={templates[key]!r}: unknown "
                           f"placeholder {{{field}}}; expected one of {PLACEHOLDERS}")


def render(template: str, tok: tokenizer_lib.Tokenizer, *, report: str = "", phrase: str = "",
           box: Optional[Sequence[float]] = None, max_caption_len: int = 192,
           max_phrase_len: int = 48) -> list[int]:
  """Template -> ids. Literal text and contents are encoded separately, contents truncated."""
  ids = []
  for literal, field, _, _ in string.Formatter().parse(template):
    if literal.strip():
      ids += tok.encode(literal.strip())
    if field == "report":
      ids += tok.encode(report)[:max_caption_len]
    elif field == "phrase":
      ids += tok.encode(phrase)[:max_phrase_len]
    elif field == "loc":
      if box is None:
        raise ValueError(f"template {template!r} needs a box")
      ids += tok.box_to_ids(box)
  return ids


def assemble(prefix: Sequence[int], suffix: Sequence[int],
             text_len: int) -> dict[str, np.ndarray]:
  """bos + prefix + suffix + eos, padded to `text_len`, with the masks of CONTRACTS D.

  Returns text, mask_ar, mask_loss: [text_len] int32 (masks are 1 on suffix tokens and eos).
  """
  n = 1 + len(prefix) + len(suffix) + 1
  if n > text_len:
    raise ValueError(f"sequence of {n} tokens exceeds text_len={text_len}; raise "
                     "config.input.text_len or lower max_caption_len / max_phrase_len")
  text = np.zeros(text_len, np.int32)
  text[:n] = [tokenizer_lib.BOS_ID, *prefix, *suffix, tokenizer_lib.EOS_ID]
  mask = np.zeros(text_len, np.int32)
  mask[1 + len(prefix):n] = 1
  return {"text": text, "mask_ar": mask, "mask_loss": mask.copy()}


def task_sequence(task: str, tok: tokenizer_lib.Tokenizer, cfg: Mapping[str, Any], *,
                  report: str = "", phrase: str = "", bbox_name: str = "",
                  box: Optional[Sequence[float]] = None) -> dict[str, np.ndarray]:
  """One pretraining example's text part: text, mask_ar, mask_loss [L]; task_id, box, region_id.

  `cfg` holds tasks, templates, max_caption_len, max_phrase_len, text_len (the input config).
  """
  kw = dict(report=report, phrase=phrase, box=box, max_caption_len=cfg["max_caption_len"],
            max_phrase_len=cfg["max_phrase_len"])
  templates = cfg["templates"]
  out = assemble(render(templates[f"{task}_prefix"], tok, **kw),
                 render(templates[f"{task}_suffix"], tok, **kw), cfg["text_len"])
  out["task_id"] = np.int32(list(cfg["tasks"]).index(task))
  out["box"] = (np.zeros(4, np.float32) if task == "cap" or box is None
                else np.asarray(box, np.float32))
  out["region_id"] = np.int32(-1 if task == "cap" else REGION_INDEX.get(bbox_name, -1))
  return out


# -- built datasets -----------------------------------------------------------------------------

def built_dir(data_dir: str, name: str, config: str) -> str:
  """`data_dir/name/config/<newest version>` of a built dataset; raises when there is none."""
  root = os.path.join(data_dir, name, config)
  versions = sorted((v for v in (os.listdir(root) if os.path.isdir(root) else ())
                     if re.fullmatch(r"\d+\.\d+\.\d+", v)
                     and os.path.exists(os.path.join(root, v, "dataset_info.json"))),
                    key=lambda v: tuple(int(x) for x in v.split(".")))
  if not versions:
    raise FileNotFoundError(f"no built dataset {name}/{config} under data_dir={data_dir!r} "
                            f"(looked for {root}/<version>/dataset_info.json); build it with "
                            f"`python -m tfds_builders.build {name} --config={config}`")
  return os.path.join(root, versions[-1])


def open_split(data_dir: str, name: str, config: str, split: str, *,
               decode_images: bool = True):
  """Random-access source of one built split, images optionally left as encoded bytes.

  Reads `built_dir(...)` with `tfds.builder_from_directory`, so the builder code need not be
  importable and nothing is ever downloaded or built here.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder_from_directory(built_dir(data_dir, name, config))
  if split not in builder.info.splits:
    raise KeyError(f"{name}/{config} in {data_dir!r} has splits "
                   f"{sorted(builder.info.splits)}, not {split!r}")
  decoders = None if decode_images else {k: tfds.decode.SkipDecoding() for k in
                                         _image_keys(name)}
  return builder.as_data_source(split=split, decoders=decoders)


def _image_keys(name: str) -> tuple[str, ...]:
  return ("main_image", "ref_image") if name == "mimic_diff_vqa" else ("image",)


def iter_records(source: Sequence[Mapping[str, Any]],
                 chunk: int = 256) -> Iterator[Mapping[str, Any]]:
  """Every record of a random-access source in order, read `chunk` at a time where the source
  supports batched reads (tfds array_record sources read those in parallel)."""
  getitems = getattr(source, "__getitems__", None)
  if getitems is None:
    yield from (source[i] for i in range(len(source)))
    return
  for start in range(0, len(source), chunk):
    yield from getitems(list(range(start, min(start + chunk, len(source)))))


def iter_text_records(data_dir: str, config: str,
                      split: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
  """(dataset name, record without decoded images) for every built dataset's `split`."""
  for name in DATASETS:
    try:
      source = open_split(data_dir, name, config, split, decode_images=False)
    except FileNotFoundError as e:
      print(f"skipping {name}: {e}")
      continue
    for record in iter_records(source):
      yield name, record


def dataset_fingerprint(data_dir: str, name: str, config: str) -> list[Any]:
  """[directory, dataset_info.json mtime]: changes whenever the dataset is rebuilt."""
  path = os.path.abspath(built_dir(data_dir, name, config))
  return [path, os.stat(os.path.join(path, "dataset_info.json")).st_mtime_ns]


def vqa_eval_study_ids(data_dir: str, config: str, cache_dir: Optional[str] = None) -> set[str]:
  """study_id and ref_id of every pair in the built mimic_diff_vqa validation and test splits.

  With `cache_dir`, the ids are kept in a text file there, keyed by the dataset's fingerprint.
  """
  cache = None
  if cache_dir:
    key = json.dumps(dataset_fingerprint(data_dir, "mimic_diff_vqa", config))
    cache = os.path.join(cache_dir, "vqa_eval_studies_"
                         + hashlib.sha1(key.encode()).hexdigest()[:16] + ".txt")
    if os.path.exists(cache):
      with open(cache) as f:
        return set(f.read().split())
  ids = set()
  for split in ("validation", "test"):
    source = open_split(data_dir, "mimic_diff_vqa", config, split, decode_images=False)
    for r in iter_records(source):
      ids.add(as_str(r["study_id"]))
      ids.add(as_str(r["ref_id"]))
  if cache:
    try:
      os.makedirs(cache_dir, exist_ok=True)
      with open(f"{cache}.{os.getpid()}.tmp", "w") as f:
        f.write("\n".join(sorted(ids)))
      os.replace(f"{cache}.{os.getpid()}.tmp", cache)
    except OSError as e:
      print(f"cache {cache} not written: {e}")
  return ids
