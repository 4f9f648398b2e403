"""TFDS builder `mimic_diff_vqa`: one record per (main, reference) pair and split, holding every
question of that pair, so each image is stored once per pair rather than once per question.

Images are found via `mimic_all.csv` (study -> dicom_id, the frontal image Medical-Diff-VQA
used). The build summary counts the validation/test studies that also sit in the MIMIC-CXR-JPG
or Chest ImaGenome training splits: the VQA split is unrelated to theirs.
"""

from __future__ import annotations

import dataclasses
import io
import os
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from tfds_builders.common import builder_base
from tfds_builders.common import images
from tfds_builders.common import layout
from tfds_builders.common import mimic_tables
from tfds_builders.common import tables
from tfds_builders.common.issues import BuildSummary

_QUESTION_COLUMNS = ("study_id", "subject_id", "ref_id", "question_type", "question", "answer",
                     "split")


@dataclasses.dataclass(frozen=True)
class Item:
  study_id: str
  ref_id: str
  subject_id: str
  main_dicom_id: str
  ref_dicom_id: str
  main_path: str
  ref_path: str
  questions: tuple[tuple[str, str, str, int], ...]  # question, answer, type, row_index


@dataclasses.dataclass(frozen=True)
class Loaded:
  main: images.LoadedImage
  ref: images.LoadedImage


def load(item: Item, size: int, image_format: str) -> Loaded:
  return Loaded(images.load_letterboxed(item.main_path, size, image_format),
                images.load_letterboxed(item.ref_path, size, image_format))


def make_example(item: Item, loaded: Loaded, summary: BuildSummary):
  for image in (loaded.main, loaded.ref):
    if image.error:
      summary.bad("unreadable_image", f"{image.path}: {image.error}")
      return None
  return f"{item.study_id}_{item.ref_id}_{item.questions[0][3]}", {
      "main_image": io.BytesIO(loaded.main.data), "ref_image": io.BytesIO(loaded.ref.data),
      "study_id": item.study_id, "ref_id": item.ref_id, "subject_id": item.subject_id,
      "main_dicom_id": item.main_dicom_id, "ref_dicom_id": item.ref_dicom_id,
      "questions": [{"question": q, "answer": a, "question_type": t, "row_index": i}
                    for q, a, t, i in item.questions],
  }


def read_mimic_all(root: str, summary: BuildSummary) -> dict[str, tuple[str, str]]:
  """study_id -> (subject_id, dicom_id) from `mimic_all.csv`."""
  path = tables.find_table(root, "mimic_all")
  out = {}
  for row in tables.read_table(path, ("subject_id", "study_id", "dicom_id"), summary):
    subject = mimic_tables.parse_id(row["subject_id"], "p", row, "subject_id", summary)
    study = mimic_tables.parse_id(row["study_id"], "s", row, "study_id", summary)
    dicom = mimic_tables.parse_dicom_id(row["dicom_id"], row, "dicom_id", summary)
    if None not in (subject, study, dicom):
      out[study] = (subject, dicom)
  return out


def training_studies(manual_dir: str, jpg_root: str, summary: BuildSummary) -> dict[str, set]:
  """Study ids of the MIMIC-CXR-JPG and (when present) Chest ImaGenome training splits."""
  out = {"mimic_cxr": set()}
  for _, _, study, split in mimic_tables.read_split(jpg_root, summary):
    if split == "train":
      out["mimic_cxr"].add(study)
  root = layout.find_release(manual_dir, layout.CHEST_IMAGENOME,
                             lambda p: os.path.isdir(os.path.join(p, "silver_dataset")),
                             "Chest ImaGenome", required=False)
  path = root and tables.find_table(os.path.join(root, "silver_dataset", "splits"), "train",
                                    required=False)
  if path:
    out["chest_imagenome"] = set()
    for row in tables.read_table(path, ("study_id",), summary):
      study = mimic_tables.parse_id(row["study_id"], "s", row, "study_id", summary)
      if study:
        out["chest_imagenome"].add(study)
  return out


class MimicDiffVqa(builder_base.CxrBuilder):
  """Medical-Diff-VQA: every question of a (main, reference) image pair in one record."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = open(
      os.path.join(os.path.dirname(__file__), "MANUAL_DOWNLOAD_INSTRUCTIONS")).read()
  load_fn = load
  make_example_fn = make_example

  def _info(self) -> tfds.core.DatasetInfo:
    text = tfds.features.Text()
    return tfds.core.DatasetInfo(
        builder=self,
        description="Medical-Diff-VQA: the questions of each (main, reference) study pair with "
        "both letterboxed images; answers exactly as in the CSV; row_index = 0-based data row "
        "of mimic_pair_questions.csv.",
        features=tfds.features.FeaturesDict({
            "main_image": self.image_feature(), "ref_image": self.image_feature(),
            "study_id": text, "ref_id": text, "subject_id": text,
            "main_dicom_id": text, "ref_dicom_id": text,
            "questions": tfds.features.Sequence({
                "question": text, "answer": text, "question_type": text,
                "row_index": tfds.features.Scalar(dtype=np.int64)}),
        }),
        homepage="https://physionet.org/content/medical-diff-vqa/",
    )

  def _plan(self, manual_dir: str) -> dict[str, list[Any]]:
    summary = self.summary
    jpg_root = layout.mimic_cxr_jpg_root(manual_dir)
    root = layout.diff_vqa_root(manual_dir)
    study_to_image = read_mimic_all(root, summary)
    groups: dict[tuple[str, str, str], list] = {}
    info: dict[tuple[str, str, str], tuple[str, str, str]] = {}
    path = tables.find_table(root, "mimic_pair_questions")
    for row in tables.read_table(path, _QUESTION_COLUMNS, summary):
      study = mimic_tables.parse_id(row["study_id"], "s", row, "study_id", summary)
      ref = mimic_tables.parse_id(row["ref_id"], "s", row, "ref_id", summary)
      subject = mimic_tables.parse_id(row["subject_id"], "p", row, "subject_id", summary)
      split = mimic_tables.parse_split(row["split"], row, "split", summary)
      if None in (study, ref, subject, split):
        continue
      missing = [s for s in (study, ref) if s not in study_to_image]
      if missing:
        summary.bad("study_not_in_mimic_all", f"{row.where()}: study {missing[0]} is not in "
                    f"{tables.find_table(root, 'mimic_all')}")
        continue
      if any(study_to_image[s][0] != subject for s in (study, ref)):
        summary.bad("subject_mismatch", f"{row.where()}: subject {subject} does not match "
                    "mimic_all.csv for its study or reference")
        continue
      key = (study, ref, split)
      if key not in groups:
        groups[key], info[key] = [], (subject, study_to_image[study][1], study_to_image[ref][1])
      elif groups[key][-1][3] != row.index - 1:
        summary.quirk("pairs whose questions are not consecutive rows")
      if row["answer"].endswith(" "):
        summary.quirk("answers with a trailing space (kept)")
      groups[key].append((row["question"], row["answer"], row["question_type"], row.index))
    plan: dict[str, list[Item]] = {"train": [], "validation": [], "test": []}
    for (study, ref, split), questions in groups.items():
      subject, main_dicom, ref_dicom = info[(study, ref, split)]
      plan[split].append(Item(
          study, ref, subject, main_dicom, ref_dicom,
          layout.image_path(jpg_root, subject, study, main_dicom),
          layout.image_path(jpg_root, subject, ref, ref_dicom), tuple(questions)))
    summary.counts["questions"] = sum(len(q) for q in groups.values())
    summary.counts["pairs"] = len(groups)
    self._count_leakage(manual_dir, jpg_root, plan)
    return plan

  def _count_leakage(self, manual_dir: str, jpg_root: str, plan: dict[str, list[Item]]) -> None:
    train = training_studies(manual_dir, jpg_root, BuildSummary(skip_bad_examples=True))
    for split in ("validation", "test"):
      studies = {s for item in plan[split] for s in (item.study_id, item.ref_id)}
      self.summary.counts[f"{split}_studies"] = len(studies)
      for source, train_studies in train.items():
        self.summary.counts[f"leakage: {split} studies in the {source} train split"] = len(
            studies & train_studies)
