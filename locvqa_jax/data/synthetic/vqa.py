"""Medical-Diff-VQA questions, the difference grammar and KeyInfo records, from the ground truth.

Follows DATA_FORMATS.md section 3: seven question types with the released templates, at most one
question per type and pair in the order abnormality, presence, view, location, level, type,
difference; answers use only the Diff-VQA vocabularies (finding names, location, level and type
words). Support devices are never named.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from locvqa_jax.data.synthetic.truth import DRAWABLE_FINDINGS, Finding

QUESTION_TYPES = ("abnormality", "presence", "view", "location", "level", "type", "difference")
VQA_SPLITS = ("train", "val", "test")

# Findings a study cannot be said to lack when another one is present (asking "is there X?" with
# answer "no" would contradict the image).
_IMPLIED_BY = {
    "lung opacity": {"consolidation", "pneumonia", "edema", "atelectasis"},
    "consolidation": {"pneumonia", "lung opacity"},
    "pneumonia": {"consolidation", "lung opacity"},
    "cardiomegaly": {"enlargement of the cardiac silhouette"},
    "enlargement of the cardiac silhouette": {"cardiomegaly"},
    "blunting of the costophrenic angle": {"pleural effusion"},
    "pleural effusion": {"blunting of the costophrenic angle"},
    "edema": {"vascular congestion"},
    "vascular congestion": {"edema"},
    "calcification": {"granuloma"},
    "granuloma": {"calcification"},
}
_FLIP = {"left": "right", "right": "left", "upper": "lower", "lower": "upper"}
_ZONE_WORD = {"upper": "upper", "mid": "middle", "lower": "lower"}


def canonical_name(name: str) -> str:
  """The name used to match findings between images: `infection` is `pneumonia`."""
  return "pneumonia" if name in ("pneumonia", "infection") else name


def location_words(finding: Finding) -> Optional[list[str]]:
  """Diff-VQA location words of a finding (KeyInfo ``location``), or None when it has none."""
  side, zone = finding.side, finding.zone
  if side is None:
    return None
  if finding.name in ("pleural effusion", "blunting of the costophrenic angle"):
    return [side]
  if finding.name == "pneumothorax":
    return [side, "apical"]
  if finding.name == "fracture":
    return [side, "rib"]
  if zone == "base":
    return ["bibasilar"] if side == "bilateral" else [side, "basal"]
  if zone == "apical":
    return [side, "apical"]
  if zone in _ZONE_WORD:
    return [side, _ZONE_WORD[zone], "lung"]
  return [side]


def location_phrase(finding: Finding) -> Optional[str]:
  words = location_words(finding)
  return " ".join(words) if words else None


def _lung(location: str) -> str:
  return f"{location} lung" if location in ("left", "right") else location


def _flip(location: str) -> Optional[str]:
  if location == "mid to lower":
    return "upper to mid"
  if location == "upper to mid":
    return "mid to lower"
  words = location.split()
  if not any(w in _FLIP for w in words) or any(w in ("bilateral", "bibasilar") for w in words):
    return None
  return " ".join(_FLIP.get(w, w) for w in words)


def join_items(names: Sequence[str]) -> str:
  """Joins finding names as the released generator does: `a`, `a, and b`, `a, b, and c`."""
  if len(names) == 1:
    return names[0]
  return ", ".join(names[:-1]) + ", and " + names[-1]


def difference(ref: Sequence[Finding], main: Sequence[Finding],
               rng: np.random.Generator) -> tuple[str, str]:
  """The difference question and answer of a (main, reference) pair.

  Returns:
    (question, answer): `what has changed compared to the reference image?` or, when the only
    changes are level changes at one shared (non-bilateral) location, `what has changed in the L
    area?`; the answer is level-change, added and missing sentences each ending in `. `, or
    `nothing has changed.`.
  """
  ref_by_name = {canonical_name(f.name): f for f in ref}
  main_names = {canonical_name(f.name) for f in main}
  changed = [(f, ref_by_name[canonical_name(f.name)]) for f in main
             if canonical_name(f.name) in ref_by_name and f.level is not None
             and ref_by_name[canonical_name(f.name)].level is not None
             and ref_by_name[canonical_name(f.name)].level != f.level]
  added = [f.name for f in main if canonical_name(f.name) not in ref_by_name]
  missing = [f.name for f in ref if canonical_name(f.name) not in main_names]
  added = [added[i] for i in rng.permutation(len(added))]
  missing = [missing[i] for i in rng.permutation(len(missing))]

  answer = "".join(f"the level of {f.name} has changed from {r.level} to {f.level}. "
                   for f, r in changed)
  if len(added) == 1:
    answer += f"the main image has an additional finding of {added[0]} than the reference image. "
  elif added:
    answer += (f"the main image has additional findings of {join_items(added)} than the "
               "reference image. ")
  if len(missing) == 1:
    answer += f"the main image is missing the finding of {missing[0]} than the reference image. "
  elif missing:
    answer += (f"the main image is missing the findings of {join_items(missing)} than the "
               "reference image. ")
  question = "what has changed compared to the reference image?"
  if changed and not added and not missing:
    locations = {location_phrase(f) for f, _ in changed}
    if len(locations) == 1:
      (location,) = locations
      if location is not None and "bilateral" not in location:
        question = f"what has changed in the {_lung(location)} area?"
  return question, answer or "nothing has changed."


def can_negate(name: str, present: Sequence[Finding]) -> bool:
  """Whether a study with findings ``present`` may be said to lack ``name`` (nor imply it)."""
  names = {canonical_name(f.name) for f in present}
  return canonical_name(name) not in names and not _IMPLIED_BY.get(name, set()) & names


def _absent_candidates(present: Sequence[Finding], negated: Sequence[str]) -> list[str]:
  pool = list(negated) or list(DRAWABLE_FINDINGS)
  return [n for n in pool if n in DRAWABLE_FINDINGS and can_negate(n, present)]


def _pick(rng: np.random.Generator, items: Sequence):
  return items[int(rng.integers(len(items)))]


def _presence(findings: Sequence[Finding], negated: Sequence[str],
              rng: np.random.Generator) -> Optional[tuple[str, str]]:
  absent = _absent_candidates(findings, negated)
  if findings and (not absent or rng.random() < 0.5):
    f = _pick(rng, findings)
    location = location_phrase(f)
    options = [(f"is there evidence of {f.name} in this image?", "yes"), (f"is there {f.name}?",
                                                                          "yes")]
    if location:
      options.append((f"is there {f.name} in the {_lung(location)} area?", "yes"))
      flipped = _flip(location)
      if flipped:
        options.append((f"is there {f.name} in the {flipped} area?", "no"))
    if f.side is not None:
      options.append((f"is the {f.name} bilateral?", "yes" if f.side == "bilateral" else "no"))
    return _pick(rng, options)
  if not absent:
    return None
  name = _pick(rng, absent)
  return _pick(rng, [(f"is there evidence of {name} in this image?", "no"),
                     (f"is there {name}?", "no")])


def _view(view: str, rng: np.random.Generator, p_ap: float) -> Optional[tuple[str, str]]:
  if view == "AP" and rng.random() >= p_ap:
    return None
  other = "AP" if view == "PA" else "PA"
  return _pick(rng, [("which view is this image taken?", f"{view} view"),
                     (f"is this {view} view?", "yes"), (f"is this {other} view?", "no")])


def _location(findings: Sequence[Finding], rng: np.random.Generator) -> Optional[tuple[str, str]]:
  located = [f for f in findings if location_phrase(f)]
  if not located:
    return None
  f = _pick(rng, located)
  options = [(f"where in the image is the {f.name} located?", f"{location_phrase(f)} area"),
             (f"where is the {f.name}?", f"{location_phrase(f)} area")]
  if f.side in ("left", "right"):
    options.append((f"is the {f.name} located on the left side or right side?", f"{f.side} side"))
  return _pick(rng, options)


def pair_questions(main_view: str, main: Sequence[Finding], ref: Sequence[Finding],
                   negated: Sequence[str], rng: np.random.Generator,
                   p_ap_view_question: float = 0.05) -> list[tuple[str, str, str]]:
  """All questions of one (main, reference) pair.

  Args:
    main_view: ``PA`` or ``AP``, the main image's view.
    main, ref: ground-truth findings of the main and reference studies (main in report order).
    negated: finding names the main report explicitly negates (KeyInfo ``no_entity``).
    rng: the patient's question generator.
    p_ap_view_question: probability of a view question for an AP main image.

  Returns:
    [(question_type, question, answer)] in QUESTION_TYPES order, at most one per type.
  """
  out = []
  if main:
    if rng.random() < 0.7:
      out.append(("abnormality", "what abnormalities are seen in this image?",
                  ", ".join(f.name for f in main)))
    else:
      out.append(("abnormality", "is there evidence of any abnormalities in this image?", "yes"))
  else:
    out.append(("abnormality", "is there evidence of any abnormalities in this image?", "no"))
  for qtype, qa in (("presence", _presence(main, negated, rng)),
                    ("view", _view(main_view, rng, p_ap_view_question)),
                    ("location", _location(main, rng))):
    if qa is not None:
      out.append((qtype, *qa))
  with_level = [f for f in main if f.level]
  if with_level:
    f = _pick(rng, with_level)
    out.append(("level", f"what level is the {f.name}?", f.level))
  with_type = [f for f in main if f.type]
  if with_type:
    f = _pick(rng, with_type)
    out.append(("type", f"what type is the {f.name}?", f.type))
  out.append(("difference", *difference(ref, main, rng)))
  seen, unique = set(), []
  for row in out:
    if row[1] not in seen:
      seen.add(row[1])
      unique.append(row)
  return unique


def key_info(subject_id: int, study_id: int, findings: Sequence[Finding],
             negated: Sequence[str]) -> dict:
  """One ``all_diseases.json`` record (KeyInfo) of a study."""
  entity = {}
  for f in findings:
    entity[f.name] = {
        "entity_name": f.name, "location": location_words(f),
        "type": [f.type] if f.type else None, "level": [f.level] if f.level else None,
        "post_location": None, "location2": None, "type2": None, "level2": None,
        "post_location2": None}
  return {"study_id": str(study_id), "subject_id": str(subject_id), "entity": entity,
          "no_entity": list(negated)}


def assign_splits(n_rows: int) -> list[str]:
  """EKAID's index split: rows [0, ceil(0.8n)) train, [.., ceil(0.9n)) val, the rest test."""
  train_end, val_end = math.ceil(0.8 * n_rows), math.ceil(0.9 * n_rows)
  return ["train" if i < train_end else "val" if i < val_end else "test" for i in range(n_rows)]
