"""TFDS builder `mimic_cxr`: one record per MIMIC-CXR-JPG image in the official split."""

from __future__ import annotations

import dataclasses
import io
import math
import os
from typing import Any, Optional

import numpy as np
import tensorflow_datasets as tfds

from tfds_builders.common import builder_base
from tfds_builders.common import images
from tfds_builders.common import layout
from tfds_builders.common import mimic_tables
from tfds_builders.common import reports
from tfds_builders.common.issues import BuildSummary


@dataclasses.dataclass(frozen=True)
class Item:
  meta: mimic_tables.ImageMeta
  image_path: str
  report_path: str
  chexpert: dict[str, float]


@dataclasses.dataclass(frozen=True)
class Loaded:
  image: images.LoadedImage
  report: Optional[str]
  report_error: str


MISSING_REPORT = "report file does not exist"


def load_report(path: str) -> tuple[Optional[str], str]:
  """(text, '') or (None, error) for one report file."""
  try:
    return reports.read_report(path), ""
  except FileNotFoundError:
    return None, MISSING_REPORT
  except (OSError, UnicodeDecodeError) as e:
    return None, f"cannot read report: {e}"


def load(item: Item, size: int, image_format: str) -> Loaded:
  text, error = load_report(item.report_path)
  return Loaded(images.load_letterboxed(item.image_path, size, image_format), text, error)


def count_sections(report: reports.Report, summary: BuildSummary) -> None:
  has_f, has_i = bool(report.findings), "impression" in report.sections
  if report.last_paragraph_used:
    summary.quirk("images whose report has neither section (last paragraph used as impression)")
  elif not report.findings and not report.impression:
    summary.quirk("images whose report has neither section nor a last paragraph")
  elif has_i and not has_f:
    summary.quirk("images whose report has an impression only")
  elif has_f and not has_i:
    summary.quirk("images whose report has findings only")


def make_example(item: Item, loaded: Loaded, summary: BuildSummary):
  if loaded.image.error:
    summary.bad("unreadable_image", f"{item.image_path}: {loaded.image.error}")
    return None
  if loaded.report is None:
    summary.bad("unreadable_report", f"{item.report_path}: {loaded.report_error} "
                f"(study {item.meta.study_id})")
    return None
  report = reports.parse_report(loaded.report)
  count_sections(report, summary)
  meta = item.meta
  return meta.dicom_id, {
      "image": io.BytesIO(loaded.image.data),
      "dicom_id": meta.dicom_id,
      "study_id": meta.study_id,
      "subject_id": meta.subject_id,
      "view_position": meta.view_position,
      "study_datetime": meta.study_datetime,
      "findings": report.findings,
      "impression": report.impression,
      "report": report.text,
      "chexpert": {k: np.float32(v) for k, v in item.chexpert.items()},
  }


def chexpert_features() -> tfds.features.FeaturesDict:
  return tfds.features.FeaturesDict({
      mimic_tables.feature_key(label): tfds.features.Scalar(dtype=np.float32)
      for label in mimic_tables.CHEXPERT_LABELS})


class MimicCxr(builder_base.CxrBuilder):
  """MIMIC-CXR-JPG: images, report sections and CheXpert labels, official split."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = open(
      os.path.join(os.path.dirname(__file__), "MANUAL_DOWNLOAD_INSTRUCTIONS")).read()
  load_fn = load
  make_example_fn = make_example

  def _info(self) -> tfds.core.DatasetInfo:
    text = tfds.features.Text()
    return tfds.core.DatasetInfo(
        builder=self,
        description="MIMIC-CXR-JPG images letterboxed to a square, with the report's findings "
        "and impression and the 14 CheXpert labels (1 positive, 0 negative, -1 uncertain, NaN "
        "not mentioned).",
        features=tfds.features.FeaturesDict({
            "image": self.image_feature(),
            "dicom_id": text, "study_id": text, "subject_id": text, "view_position": text,
            "study_datetime": text, "findings": text, "impression": text, "report": text,
            "chexpert": chexpert_features(),
        }),
        homepage="https://physionet.org/content/mimic-cxr-jpg/",
    )

  def _plan(self, manual_dir: str) -> dict[str, list[Any]]:
    summary = self.summary
    jpg_root = layout.mimic_cxr_jpg_root(manual_dir)
    reports_dir = layout.reports_root(manual_dir)
    metadata = mimic_tables.read_metadata(jpg_root, summary)
    chexpert = mimic_tables.read_chexpert(jpg_root, summary)
    no_labels = {mimic_tables.feature_key(l): math.nan for l in mimic_tables.CHEXPERT_LABELS}
    plan: dict[str, list[Item]] = {"train": [], "validation": [], "test": []}
    unlabelled = set()
    for dicom, subject, study, split in mimic_tables.read_split(jpg_root, summary):
      meta = metadata.get(dicom)
      if meta is None:
        summary.bad("split_image_without_metadata",
                    f"{dicom}: listed in the split table but not in mimic-cxr-2.0.0-metadata")
        continue
      if (meta.subject_id, meta.study_id) != (subject, study):
        summary.bad("split_metadata_mismatch",
                    f"{dicom}: split table says subject {subject} study {study}, metadata says "
                    f"subject {meta.subject_id} study {meta.study_id}")
        continue
      labels = chexpert.get(study)
      if labels is None:
        unlabelled.add(study)
        labels = no_labels
      plan[split].append(Item(
          meta, layout.image_path(jpg_root, subject, study, dicom),
          layout.report_path(reports_dir, subject, study), labels))
    summary.quirk("studies missing from the CheXpert table (all labels NaN)", len(unlabelled))
    summary.counts["images_in_split_table"] = sum(len(v) for v in plan.values())
    return plan
