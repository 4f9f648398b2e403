"""Finding-level scoring of difference answers: a parser for the answer grammar and micro P/R/F1.

A difference answer (DATA_FORMATS.md 3.3) is a concatenation of sentences:

  the level of X has changed from A to B.
  the main image has an additional finding of X than the reference image.
  the main image has additional findings of X1, X2, and Xn than the reference image.
  the main image is missing the finding of X than the reference image.
  the main image is missing the findings of X1, X2, and Xn than the reference image.
  nothing has changed.

Each answer is reduced to a set of (finding, direction) items with direction in
{added, missing, level changed}; `infection` and `pneumonia` are one finding (the generator treats
them as the same when computing added/missing). Text the grammar does not cover yields no item and
is reported in `unparsed`, so a garbled model output is counted rather than crashing the scorer.

Scores are pooled over all pairs (micro average): a pair where both sides say `nothing has
changed.` adds no items. The false-change rate is the share of pairs whose reference says nothing
has changed for which the prediction names at least one item.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from typing import Optional, Sequence

ADDED = "added"
MISSING = "missing"
LEVEL_CHANGED = "level changed"
DIRECTIONS = (ADDED, MISSING, LEVEL_CHANGED)

# The 30 official Medical-Diff-VQA finding names (disease_lib.csv, DATA_FORMATS.md 3.4), id order.
FINDINGS = (
    "pleural effusion",
    "atelectasis",
    "cardiomegaly",
    "enlargement of the cardiac silhouette",
    "edema",
    "hernia",
    "vascular congestion",
    "hilar congestion",
    "pneumothorax",
    "heart failure",
    "lung opacity",
    "pneumonia",
    "tortuosity of the descending aorta",
    "scoliosis",
    "gastric distention",
    "hypoxemia",
    "hypertensive heart disease",
    "hematoma",
    "tortuosity of the thoracic aorta",
    "contusion",
    "emphysema",
    "granuloma",
    "calcification",
    "pleural thickening",
    "thymoma",
    "blunting of the costophrenic angle",
    "consolidation",
    "fracture",
    "pneumomediastinum",
    "air collection",
)

# Names that denote the same finding when comparing answers.
_ALIASES = {"infection": "pneumonia"}
_CANONICAL = {name: name for name in FINDINGS} | _ALIASES

LEVEL_RE = re.compile(r"^the level of (?P<finding>.+?) has changed from (?P<a>.+) to (?P<b>.+)$")
ADDED_RE = re.compile(
    r"^the main image has (?:an additional finding|additional findings) of (?P<list>.+) "
    r"than the reference image$")
MISSING_RE = re.compile(
    r"^the main image is missing the findings? of (?P<list>.+) than the reference image$")
_NOTHING_RE = re.compile(r"^nothing has changed$")
# List separators: `X1, X2, and Xn` (the generator's Oxford comma, even for two items), and the
# comma-less `X1 and X2` a model may produce. No official name contains `,` or ` and `.
_LIST_SPLIT_RE = re.compile(r"\s*,\s*(?:and\s+)?|\s+and\s+")

Item = tuple[str, str]


@dataclasses.dataclass(frozen=True)
class ParsedDifference:
  """What one difference answer says.

  Attributes:
    items: the (finding, direction) items named, finding names canonical (`infection` ->
      `pneumonia`).
    nothing_changed: the answer contains the sentence `nothing has changed.`
    unparsed: sentences, or entries of a finding list, that the grammar does not cover.
  """
  items: frozenset[Item]
  nothing_changed: bool
  unparsed: tuple[str, ...]


def canonical_finding(name: str) -> Optional[str]:
  """The official name for `name` (whitespace and case insensitive), or None if unknown."""
  return _CANONICAL.get(" ".join(name.lower().split()))


def parse_difference(text: str) -> ParsedDifference:
  """Parses one difference answer (reference or prediction) into items; never raises on text."""
  normalized = " ".join(str(text).lower().split())
  items: set[Item] = set()
  unparsed: list[str] = []
  nothing_changed = False
  # Finding names, level words and the fixed phrases contain no `.`, so sentences split cleanly;
  # a missing final period is tolerated.
  for sentence in (s.strip() for s in normalized.split(".")):
    if not sentence:
      continue
    if _NOTHING_RE.match(sentence):
      nothing_changed = True
      continue
    level = LEVEL_RE.match(sentence)
    if level:
      finding = canonical_finding(level.group("finding"))
      if finding is None:
        unparsed.append(level.group("finding"))
      else:
        items.add((finding, LEVEL_CHANGED))
      continue
    for regex, direction in ((ADDED_RE, ADDED), (MISSING_RE, MISSING)):
      listed = regex.match(sentence)
      if listed:
        for entry in _LIST_SPLIT_RE.split(listed.group("list")):
          finding = canonical_finding(entry)
          if finding is None:
            unparsed.append(entry)
          else:
            items.add((finding, direction))
        break
    else:
      unparsed.append(sentence)
  return ParsedDifference(frozenset(items), nothing_changed, tuple(unparsed))


def _ratio(numerator: int, denominator: int) -> Optional[float]:
  return numerator / denominator if denominator else None


def _prf(tp: int, fp: int, fn: int) -> dict[str, Optional[float]]:
  # F1 from counts equals the harmonic mean of P and R when both exist, and is 0 (not undefined)
  # when a side has items but none match.
  return {
      "precision": _ratio(tp, tp + fp),
      "recall": _ratio(tp, tp + fn),
      "f1": _ratio(2 * tp, 2 * tp + fp + fn),
      "tp": tp,
      "fp": fp,
      "fn": fn,
  }


def finding_metrics(references: Sequence[str], predictions: Sequence[str]) -> dict:
  """Micro finding-level precision/recall/F1 and the false-change rate over aligned answer pairs.

  Args:
    references: [N] reference difference answers.
    predictions: [N] predicted difference answers, aligned with `references`.

  Returns:
    `finding_precision`, `finding_recall`, `finding_f1` (None where the denominator is 0, i.e. no
    items on the relevant side), item counts, a `by_direction` breakdown, `false_change_rate`
    (None when no reference says nothing changed) with its counts, and counts of answers with
    unparsed text.
  """
  if len(references) != len(predictions):
    raise ValueError(
        f"finding_metrics: {len(references)} references but {len(predictions)} predictions")
  counts = collections.Counter()
  by_direction = {d: collections.Counter() for d in DIRECTIONS}
  for reference, prediction in zip(references, predictions):
    ref = parse_difference(reference)
    pred = parse_difference(prediction)
    for bucket, items in (("tp", pred.items & ref.items), ("fp", pred.items - ref.items),
                          ("fn", ref.items - pred.items)):
      counts[bucket] += len(items)
      for _, direction in items:
        by_direction[direction][bucket] += 1
    if ref.nothing_changed and not ref.items:
      counts["nothing_changed_references"] += 1
      counts["false_changes"] += bool(pred.items)
    counts["unparsed_references"] += bool(ref.unparsed)
    counts["unparsed_predictions"] += bool(pred.unparsed)
    counts["unparsed_prediction_fragments"] += len(pred.unparsed)
  overall = _prf(counts["tp"], counts["fp"], counts["fn"])
  return {
      "finding_precision": overall["precision"],
      "finding_recall": overall["recall"],
      "finding_f1": overall["f1"],
      "finding_tp": counts["tp"],
      "finding_fp": counts["fp"],
      "finding_fn": counts["fn"],
      "by_direction": {
          d: _prf(c["tp"], c["fp"], c["fn"]) for d, c in by_direction.items()
      },
      "false_change_rate": _ratio(counts["false_changes"], counts["nothing_changed_references"]),
      "false_changes": counts["false_changes"],
      "nothing_changed_references": counts["nothing_changed_references"],
      "unparsed_references": counts["unparsed_references"],
      "unparsed_predictions": counts["unparsed_predictions"],
      "unparsed_prediction_fragments": counts["unparsed_prediction_fragments"],
  }
