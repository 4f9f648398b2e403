"""MIMIC-CXR-JPG tables: image metadata, the official split and the CheXpert labels."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Optional

from tfds_builders.common import tables
from tfds_builders.common.issues import BuildSummary

CHEXPERT_LABELS = (
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum",
    "Fracture", "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other",
    "Pneumonia", "Pneumothorax", "Support Devices")

# Split strings of the three releases -> TFDS split names.
SPLIT_NAMES = {"train": "train", "validate": "validation", "valid": "validation",
               "val": "validation", "validation": "validation", "test": "test"}

_DIGITS = re.compile(r"^\d+$")
_DICOM = re.compile(r"^[0-9a-fA-F-]+$")


def feature_key(label: str) -> str:
  """`Enlarged Cardiomediastinum` -> `enlarged_cardiomediastinum`."""
  return label.lower().replace(" ", "_")


def parse_id(value: str, prefix: str, row: tables.Row, column: str,
             summary: BuildSummary) -> Optional[str]:
  """A subject/study id as its decimal string; a leading 'p'/'s' is tolerated and dropped."""
  value = value.strip()
  if value[:1] == prefix:
    value = value[1:]
  if value.endswith(".0"):
    value = value[:-2]
  if not _DIGITS.match(value):
    summary.bad("malformed_csv_row", f"{row.where()}: column {column}: expected a decimal id, "
                f"got {row[column]!r}")
    return None
  return value


def parse_dicom_id(value: str, row: tables.Row, column: str,
                   summary: BuildSummary) -> Optional[str]:
  """A dicom_id; a trailing `.dcm`/`.jpg` is dropped (counted)."""
  value = value.strip()
  for suffix in (".dcm", ".jpg"):
    if value.endswith(suffix):
      summary.quirk(f"dicom_id with {suffix} suffix")
      value = value[:-len(suffix)]
  if not value or not _DICOM.match(value):
    summary.bad("malformed_csv_row", f"{row.where()}: column {column}: expected a dicom id, "
                f"got {row[column]!r}")
    return None
  return value


def parse_split(value: str, row: tables.Row, column: str, summary: BuildSummary) -> Optional[str]:
  key = value.strip().lower()
  if key not in SPLIT_NAMES:
    summary.bad("malformed_csv_row", f"{row.where()}: column {column}: unknown split {value!r}; "
                f"expected one of {sorted(SPLIT_NAMES)}")
    return None
  if key != "validation" and SPLIT_NAMES[key] == "validation":
    summary.quirk(f"split name '{key}' read as validation")
  return SPLIT_NAMES[key]


@dataclasses.dataclass
class ImageMeta:
  dicom_id: str
  subject_id: str
  study_id: str
  view_position: str
  study_datetime: str
  view_code: str
  rows: int  # DICOM height in pixels, 0 when the table lacks it
  columns: int  # DICOM width in pixels, 0 when the table lacks it


def _size(value: str) -> int:
  try:
    return max(0, int(float(value)))
  except ValueError:
    return 0


def _study_datetime(row: tables.Row, summary: BuildSummary) -> Optional[str]:
  """`StudyDate` 21800506 + `StudyTime` 80556.875 -> `2180-05-06T08:05:56.875`."""
  date, time = row["StudyDate"].strip(), row["StudyTime"].strip()
  try:
    date_int = int(float(date))
    time_f = float(time)
    if not math.isfinite(time_f) or not 0 <= time_f < 240000:
      raise ValueError(time)
  except ValueError:
    summary.bad("malformed_csv_row", f"{row.where()}: StudyDate/StudyTime {date!r}/{time!r} "
                "is not YYYYMMDD / HHMMSS.fff")
    return None
  padded = "%010.3f" % time_f
  if len(time.split(".")[0]) < 6:
    summary.quirk("StudyTime re-padded (leading zero lost in the float)")
  d = f"{date_int:08d}"
  if not (1 <= int(d[4:6]) <= 12 and 1 <= int(d[6:8]) <= 31 and int(padded[2:4]) < 60
          and int(padded[4:6]) < 60):
    summary.bad("malformed_csv_row", f"{row.where()}: StudyDate/StudyTime {date!r}/{time!r} "
                "is not a valid date and time")
    return None
  return f"{d[:4]}-{d[4:6]}-{d[6:8]}T{padded[:2]}:{padded[2:4]}:{padded[4:10]}"


def read_metadata(jpg_root: str, summary: BuildSummary) -> dict[str, ImageMeta]:
  """dicom_id -> ImageMeta from `mimic-cxr-2.0.0-metadata.csv(.gz)`."""
  path = tables.find_table(jpg_root, "mimic-cxr-2.0.0-metadata")
  out = {}
  for row in tables.read_table(
      path, ("dicom_id", "subject_id", "study_id", "StudyDate", "StudyTime"), summary,
      optional=("ViewPosition", "ViewCodeSequence_CodeMeaning", "Rows", "Columns")):
    dicom = parse_dicom_id(row["dicom_id"], row, "dicom_id", summary)
    subject = parse_id(row["subject_id"], "p", row, "subject_id", summary)
    study = parse_id(row["study_id"], "s", row, "study_id", summary)
    when = _study_datetime(row, summary)
    if None in (dicom, subject, study, when):
      continue
    view = row.get("ViewPosition", "").strip()
    if not view:
      summary.quirk("images without ViewPosition")
    out[dicom] = ImageMeta(dicom, subject, study, view, when,
                           row.get("ViewCodeSequence_CodeMeaning", "").strip(),
                           _size(row.get("Rows", "")), _size(row.get("Columns", "")))
  return out


def read_split(jpg_root: str, summary: BuildSummary) -> list[tuple[str, str, str, str]]:
  """(dicom_id, subject_id, study_id, split) in file order from `mimic-cxr-2.0.0-split`."""
  path = tables.find_table(jpg_root, "mimic-cxr-2.0.0-split")
  out = []
  for row in tables.read_table(path, ("dicom_id", "study_id", "subject_id", "split"), summary):
    dicom = parse_dicom_id(row["dicom_id"], row, "dicom_id", summary)
    subject = parse_id(row["subject_id"], "p", row, "subject_id", summary)
    study = parse_id(row["study_id"], "s", row, "study_id", summary)
    split = parse_split(row["split"], row, "split", summary)
    if None not in (dicom, subject, study, split):
      out.append((dicom, subject, study, split))
  return out


def read_chexpert(jpg_root: str, summary: BuildSummary) -> dict[str, dict[str, float]]:
  """study_id -> {feature key: 1 / 0 / -1 / NaN} from `mimic-cxr-2.0.0-chexpert`."""
  path = tables.find_table(jpg_root, "mimic-cxr-2.0.0-chexpert")
  out = {}
  for row in tables.read_table(path, ("subject_id", "study_id") + CHEXPERT_LABELS, summary):
    study = parse_id(row["study_id"], "s", row, "study_id", summary)
    if study is None:
      continue
    labels, ok = {}, True
    for label in CHEXPERT_LABELS:
      value = row[label].strip()
      try:
        number = float(value) if value else math.nan
      except ValueError:
        number = 2.0
      if not (math.isnan(number) or number in (1.0, 0.0, -1.0)):
        summary.bad("malformed_csv_row", f"{row.where()}: column {label}: expected 1.0, 0.0, "
                    f"-1.0 or empty, got {value!r}")
        ok = False
        break
      labels[feature_key(label)] = number
    if ok:
      if all(math.isnan(v) for v in labels.values()):
        summary.quirk("studies with no CheXpert label at all")
      out[study] = labels
  return out
