"""Boxes for the findings that predicted difference answers name, with their true boxes.

`python -m locvqa_jax.evaluate --workdir W --grounding [--pretrain_workdir P]` calls
`ground_split`: every finding the predicted answer of a difference question names (the answer
grammar of locvqa_jax/evaluation/findings.py) is located by CAREF (locvqa_jax/caref.py) on the
image where it is visible: the main image for `added` and `level changed`, the reference image
for `missing` (present before, gone now). The pair's images are the ones the VQA model read
(the built mimic_diff_vqa records), decoded one batch at a time. Each record gains

  "grounding": [{"finding", "direction", "image": "main"|"reference", "dicom_id",
                 "box": [ymin, xmin, ymax, xmax] | null, "truth", "truth_regions",
                 "mean_box"}]

with the true boxes from the built chest_imagenome (locvqa_jax/evaluation/box_truth.py); the
`grounding` metric group (locvqa_jax/evaluation/grounding.py) scores them.
"""

from __future__ import annotations

import io
from typing import Any, Mapping, Optional, Sequence

import numpy as np
from PIL import Image

from locvqa_jax.evaluation import box_truth
from locvqa_jax.evaluation import findings

DIFFERENCE = "difference"
# The image on which a finding of each direction is present.
IMAGE_OF_DIRECTION = {findings.ADDED: "main", findings.LEVEL_CHANGED: "main",
                      findings.MISSING: "reference"}
ANSWERS = ("prediction", "reference")
_IMAGE_KEYS = {"main": ("main_image", "main_dicom_id"), "reference": ("ref_image", "ref_dicom_id")}


def decode_image(value: Any) -> np.ndarray:
  """A mimic_diff_vqa image: encoded PNG/JPEG bytes or a decoded array -> [R, R] uint8."""
  if isinstance(value, (bytes, np.bytes_)):
    with Image.open(io.BytesIO(value)) as pil:
      return np.asarray(pil.convert("L"))
  image = np.asarray(value, np.uint8)
  return image[..., 0] if image.ndim == 3 else image


class _PairImages(Sequence):
  """Lazy [N] images: item i is `image` of records[record_index[i]], decoded when read."""

  def __init__(self, records: Sequence[Mapping[str, Any]], wanted: Sequence[tuple[int, str]]):
    self._records, self._wanted = records, list(wanted)

  def __len__(self) -> int:
    return len(self._wanted)

  def __getitem__(self, i: int) -> np.ndarray:
    record_index, image = self._wanted[i]
    return decode_image(self._records[record_index][_IMAGE_KEYS[image][0]])


def named_findings(prediction: str) -> list[tuple[str, str, str]]:
  """(finding, direction, image) of every item a difference answer names, in a stable order."""
  return [(f, d, IMAGE_OF_DIRECTION[d])
          for f, d in sorted(findings.parse_difference(prediction).items)]


def ground_predictions(predictions: Sequence[dict[str, Any]],
                       records: Sequence[Mapping[str, Any]], grounder: Any, *,
                       answers: str = "prediction",
                       progress: bool = False) -> list[dict[str, Any]]:
  """Difference predictions with `grounding` entries (boxes only; truth is attached later).

  Args:
    predictions: evaluate records (row_index, question_type, prediction, ...).
    records: the split's mimic_diff_vqa records (random access; images encoded or decoded).
    grounder: a caref.Grounder.
    answers: whose named findings are located: 'prediction' or 'reference'.
  """
  if answers not in ANSWERS:
    raise ValueError(f"grounding answers={answers!r}; expected one of {ANSWERS}")
  from locvqa_jax.data import tasks  # pylint: disable=g-import-not-at-top
  record_of_row = {}
  for k, r in enumerate(tasks.iter_records(records)):
    for row in r["questions"]["row_index"]:
      record_of_row[int(row)] = (k, {image: tasks.as_str(r.get(key, b""))
                                     for image, (_, key) in _IMAGE_KEYS.items()})
  wanted, phrases, slots = [], [], []
  out = [dict(p) for p in predictions]
  for i, p in enumerate(out):
    if p["question_type"] != DIFFERENCE:
      continue
    k, dicoms = record_of_row[int(p["row_index"])]
    p["grounding"] = []
    for finding, direction, image in named_findings(p[answers]):
      p["grounding"].append({"finding": finding, "direction": direction, "image": image,
                             "dicom_id": dicoms[image], "box": None})
      wanted.append((k, image))
      phrases.append(finding)
      slots.append((i, len(p["grounding"]) - 1))
  boxes = grounder.locate_pairs(_PairImages(records, wanted), phrases, progress=progress)
  for (i, j), box in zip(slots, boxes):
    if np.isfinite(box).all():
      out[i]["grounding"][j]["box"] = [float(c) for c in box]
  return out


def ground_split(predictions: Sequence[dict[str, Any]], records: Sequence[Mapping[str, Any]], *,
                 pretrain_workdir: str, data_dir: str, preferred_config: str = "",
                 batch_size: int = 32, constrain_boxes: Optional[bool] = None,
                 answers: str = "prediction",
                 truth_records: Optional[Mapping[str, Sequence[Mapping[str, Any]]]] = None,
                 progress: bool = False) -> tuple[list[dict[str, Any]], dict[str, Any]]:
  """(predictions with boxes and true boxes, settings for metrics.json).

  Args:
    predictions, records: as for `ground_predictions`.
    pretrain_workdir: the pretraining run whose decoder locates the findings.
    data_dir, preferred_config: where the built chest_imagenome is (any resolution).
    truth_records: chest_imagenome records by split instead of data_dir (tests).
  """
  from locvqa_jax import caref  # pylint: disable=g-import-not-at-top
  grounder = caref.Grounder(pretrain_workdir, batch_size=batch_size,
                            constrain_boxes=constrain_boxes)
  grounded = ground_predictions(predictions, records, grounder, answers=answers,
                                progress=progress)
  dicoms, studies = box_truth.wanted_ids(grounded)
  if truth_records is not None:
    index = box_truth.build_index(truth_records, dicom_ids=dicoms, study_ids=studies,
                                  source="records given")
  else:
    index = box_truth.open_index(data_dir, preferred_config=preferred_config, dicom_ids=dicoms,
                                 study_ids=studies, progress=progress)
  settings = dict(grounder.settings(), answers=answers, truth=index.source)
  return box_truth.attach_truth(grounded, index), settings
