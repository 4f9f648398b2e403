"""Grounding accuracy of the boxes drawn for the findings a difference answer names.

`python -m locvqa_jax.evaluate --workdir W --grounding` locates every finding the predicted
answer names (CAREF of the pretraining decoder, locvqa_jax/vqa_grounding.py) and stores, per
difference record, a list under `grounding`:

  {"finding": "pleural effusion", "direction": "added" | "missing" | "level changed",
   "image": "main" | "reference", "dicom_id": "...", "box": [ymin, xmin, ymax, xmax] | null,
   "truth": [[ymin, xmin, ymax, xmax], ...], "truth_regions": ["left lung", ...],
   "mean_box": [ymin, xmin, ymax, xmax] | null}

Boxes are in [0, 1] of the letterboxed frame. `truth` holds the Chest ImaGenome regions whose
phrases carry the finding as a positive attribute on that image (locvqa_jax/evaluation/
box_truth.py); an empty list means the image has no true box for it (`no_truth`, not scored).
`mean_box` is the finding's mean true box over the chest_imagenome training split: the baseline
that draws the same box whatever the image.

A predicted box scores its best IoU over the true regions (max, not the IoU with their union):
CAREF is trained to put one region's box per phrase, and a finding is usually true in several
regions (both costophrenic angles, a lung zone and the lung containing it), so the union would
penalise every correct single-region box of a bilateral finding. A missing box (the 4 decoded
tokens are not a box) scores 0. Accuracy counts IoU >= 0.5.
"""

from __future__ import annotations

import collections
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from locvqa_jax.evaluation.records import Prediction, PredictionsFormatError

ACC_THRESHOLD = 0.5
IMAGES = ("main", "reference")


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """IoU of boxes a, b: [N, 4] (ymin, xmin, ymax, xmax) -> [N]; degenerate boxes give 0."""
  ih = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
  iw = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
  inter = ih * iw
  area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)
  union = area(a) + area(b) - inter
  return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nearest_box_iou(pred: np.ndarray, boxes: np.ndarray) -> np.ndarray:
  """[N, 4] boxes and [N, K, 4] candidate truths (zero rows unused) -> [N] best IoU."""
  n, k = boxes.shape[:2]
  iou = box_iou(np.repeat(pred, k, axis=0), boxes.reshape(n * k, 4))
  return iou.reshape(n, k).max(axis=1)


def best_iou(box: Optional[Sequence[float]], truth: Sequence[Sequence[float]]) -> float:
  """Max IoU of one box [4] over the true boxes [T, 4] (T >= 1); 0 for a missing box."""
  if box is None:
    return 0.0
  truth = np.asarray(truth, np.float64).reshape(1, -1, 4)
  return float(nearest_box_iou(np.asarray(box, np.float64).reshape(1, 4), truth)[0])


def has_grounding(p: Prediction) -> bool:
  """The metric group's selection: difference records that carry `grounding` entries."""
  return p.question_type == "difference" and "grounding" in p.extras


def _where(p: Prediction, k: int) -> str:
  return f"record {p.id!r} grounding[{k}]" if p.id is not None else f"grounding[{k}]"


def _box(value: Any, where: str, key: str) -> Optional[np.ndarray]:
  if value is None:
    return None
  box = np.asarray(value, np.float64)
  if box.shape != (4,) or not np.isfinite(box).all():
    raise PredictionsFormatError(f"{where}: {key!r} must be null or 4 numbers "
                                 f"[ymin, xmin, ymax, xmax], got {value!r}")
  return box


def entries(p: Prediction) -> list[dict[str, Any]]:
  """The validated grounding entries of a record; errors name the record and the entry."""
  items = p.extras.get("grounding")
  if not isinstance(items, list):
    raise PredictionsFormatError(f"record {p.id!r}: 'grounding' must be a list of objects, got "
                                 f"{type(items).__name__}")
  out = []
  for k, e in enumerate(items):
    where = _where(p, k)
    if not isinstance(e, Mapping) or "finding" not in e or "box" not in e:
      raise PredictionsFormatError(f"{where}: expected an object with 'finding' and 'box', "
                                   f"got {e!r}")
    if "truth" not in e:
      raise PredictionsFormatError(
          f"{where}: no 'truth' boxes; score with --data_dir DIR (a data_dir holding the built "
          "chest_imagenome) so the true boxes are looked up")
    truth = [_box(t, where, "truth") for t in (e["truth"] or [])]
    if any(t is None for t in truth):
      raise PredictionsFormatError(f"{where}: 'truth' must be a list of boxes")
    out.append({"finding": str(e["finding"]), "direction": str(e.get("direction", "")),
                "box": _box(e["box"], where, "box"), "truth": truth,
                "mean_box": _box(e.get("mean_box"), where, "mean_box")})
  return out


class _Tally:
  """IoUs of the model and of the mean-box baseline over scored boxes."""

  def __init__(self):
    self.iou, self.base = [], []

  def add(self, iou: float, base: float) -> None:
    self.iou.append(iou)
    self.base.append(base)

  def summary(self) -> dict[str, Any]:
    if not self.iou:
      return {"n_boxes": 0, "mean_iou": None, "acc50": None, "baseline_mean_iou": None,
              "baseline_acc50": None}
    iou, base = np.asarray(self.iou), np.asarray(self.base)
    return {"n_boxes": len(iou), "mean_iou": float(iou.mean()),
            "acc50": float((iou >= ACC_THRESHOLD).mean()),
            "baseline_mean_iou": float(base.mean()),
            "baseline_acc50": float((base >= ACC_THRESHOLD).mean())}


def grounding_metrics(predictions: Sequence[Prediction]) -> dict[str, Any]:
  """Grounding scores of records with `grounding` entries (module docstring).

  Returns:
    n (records), n_named (entries), n_boxes (entries with a true box: the scored ones),
    no_truth (entries without), no_box (scored entries whose box is missing), mean_iou, acc50,
    baseline_mean_iou, baseline_acc50 (the finding's mean training box on the same entries; a
    finding never boxed in training has no mean box and scores 0, counted in
    baseline_no_box), and by_direction / by_finding breakdowns of the same numbers.
  """
  overall, by_direction = _Tally(), collections.defaultdict(_Tally)
  by_finding = collections.defaultdict(_Tally)
  counts = collections.Counter()
  for p in predictions:
    for e in entries(p):
      counts["n_named"] += 1
      if not e["truth"]:
        counts["no_truth"] += 1
        continue
      counts["no_box"] += e["box"] is None
      counts["baseline_no_box"] += e["mean_box"] is None
      iou, base = best_iou(e["box"], e["truth"]), best_iou(e["mean_box"], e["truth"])
      for tally in (overall, by_direction[e["direction"]], by_finding[e["finding"]]):
        tally.add(iou, base)
  return {"n": len(predictions), "n_named": counts["n_named"], **overall.summary(),
          "no_truth": counts["no_truth"], "no_box": counts["no_box"],
          "baseline_no_box": counts["baseline_no_box"],
          "by_direction": {d: t.summary() for d, t in sorted(by_direction.items())},
          "by_finding": {f: t.summary() for f, t in sorted(by_finding.items())},
          "settings": protocol()}


def protocol() -> dict[str, Any]:
  """How boxes are matched; written to metrics.json under settings.grounding."""
  return {"truth": "Chest ImaGenome regions whose phrases carry the finding as a positive "
                   "(yes) attribute, on the image the box was drawn on",
          "match": "max IoU over the true regions", "acc_threshold": ACC_THRESHOLD,
          "baseline": "the finding's mean true box over the chest_imagenome train split",
          "box_format": "[ymin, xmin, ymax, xmax] in [0, 1] of the letterboxed frame"}
