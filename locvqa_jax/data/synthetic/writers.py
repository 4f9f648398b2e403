"""Writes the synthetic datasets: one patient's files in a worker, then the shared tables.

``generate_patient`` runs in a worker process: it samples the patient's timeline, renders every
image, writes the JPGs, reports and scene graphs, and returns the patient's table rows.
``write_tables`` then writes the CSV/JSON tables of all patients in the parent, in patient order,
so the output does not depend on the number of workers. Column orders follow DATA_FORMATS.md.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
import os
from typing import Any, Sequence

import numpy as np
from PIL import Image

from locvqa_jax.data.synthetic import layout, presets, reports, scene_graph, timeline, vqa

MIMIC_JPG, MIMIC_REPORTS = "mimic-cxr-jpg", "mimic-cxr-reports"
IMAGENOME, DIFF_VQA = "chest-imagenome/silver_dataset", "medical-diff-vqa"
METADATA_COLUMNS = (
    "dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition",
    "Rows", "Columns", "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning",
    "ViewCodeSequence_CodeMeaning", "PatientOrientationCodeSequence_CodeMeaning")
SPLIT_COLUMNS = ("dicom_id", "study_id", "subject_id", "split")
LABEL_COLUMNS = ("subject_id", "study_id") + reports.CHEXPERT_COLUMNS
IMAGENOME_COLUMNS = ("subject_id", "study_id", "dicom_id", "path", "ViewPosition")
PAIR_COLUMNS = ("study_id", "subject_id", "ref_id", "question_type", "question", "answer", "split")
MIMIC_ALL_COLUMNS = LABEL_COLUMNS + ("dicom_id", "view", "split", "study_date", "study_order")
VIEW_MEANING = {"PA": "postero-anterior", "AP": "antero-posterior", "LATERAL": "lateral"}
ORIENTATION = {"PA": "Erect", "AP": "Recumbent", "LATERAL": "Erect"}
JPEG_QUALITY = 95


@dataclasses.dataclass(frozen=True)
class PatientTask:
  """Everything a worker needs for one patient (picklable)."""

  index: int
  seed: int
  preset: str
  image_size: int
  out_dir: str
  subject_id: int
  study_ids: tuple[int, ...]
  mimic_split: str
  imagenome_split: str
  gold: bool
  keep_preview: bool = False
  # (RenderKnobs field, value) pairs that replace the preset's values.
  knob_overrides: tuple[tuple[str, Any], ...] = ()


@dataclasses.dataclass
class PatientResult:
  """One patient's table rows (strings/ints, in output column order) and counts."""

  index: int
  metadata: list[list[Any]] = dataclasses.field(default_factory=list)
  mimic_split: list[list[Any]] = dataclasses.field(default_factory=list)
  labels: list[list[Any]] = dataclasses.field(default_factory=list)
  imagenome: list[tuple[str, list[Any]]] = dataclasses.field(default_factory=list)
  gold: list[list[Any]] = dataclasses.field(default_factory=list)
  mimic_all: list[list[Any]] = dataclasses.field(default_factory=list)
  questions: list[list[Any]] = dataclasses.field(default_factory=list)
  key_info: list[dict] = dataclasses.field(default_factory=list)
  n_studies: int = 0
  n_images: int = 0
  n_pairs: int = 0
  preview: list[tuple] = dataclasses.field(default_factory=list)


def patient_rngs(seed: int, index: int) -> dict[str, np.random.Generator]:
  """Independent generators of one patient, derived from (seed, patient index) only."""
  names = ("timeline", "render", "text", "vqa", "ids")
  children = np.random.SeedSequence([seed, index]).spawn(len(names))
  return {n: np.random.default_rng(c) for n, c in zip(names, children)}


def _write_bytes(path: str, data: bytes) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(data)


def _jpeg(image: np.ndarray) -> bytes:
  if image.dtype != np.uint8 or image.ndim != 2:
    raise ValueError(f"renderer returned {image.dtype} {image.shape}; expected a 2-D uint8 image")
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format="JPEG", quality=JPEG_QUALITY)
  return buf.getvalue()


def exam_name(study: timeline.Study) -> str:
  if study.view == "AP":
    return "CHEST (PORTABLE AP)"
  return "CHEST (PA AND LAT)" if study.has_lateral else "CHEST (PA)"


def generate_patient(task: PatientTask) -> PatientResult:
  """Samples, renders and writes one patient; returns its table rows."""
  from locvqa_jax.data.synthetic import render  # pylint: disable=g-import-not-at-top
  preset = presets.get_preset(task.preset)
  knobs = dataclasses.replace(preset.render_knobs(), **dict(task.knob_overrides))
  rngs = patient_rngs(task.seed, task.index)
  patient = timeline.sample_patient(rngs["timeline"], preset.timeline, task.index,
                                    task.subject_id, task.study_ids)
  anatomy = render.sample_anatomy(rngs["render"], knobs)
  result = PatientResult(index=task.index, n_studies=len(patient.studies))
  frontal_ids, negated = [], []
  dates = [layout.study_date(s.when) for s in patient.studies]
  orders = layout.study_order(dates)
  for study in patient.studies:
    report = reports.write_report(patient, study, rngs["text"])
    negated.append(report.negated)
    _write_bytes(os.path.join(task.out_dir, MIMIC_REPORTS,
                              layout.report_path(patient.subject_id, study.study_id)),
                 report.text.encode("utf-8"))
    views = [study.view] + (["LATERAL"] if study.has_lateral else [])
    dicoms = [layout.dicom_id(rngs["ids"]) for _ in views]
    frontal_ids.append(dicoms[0])
    for view, dicom in zip(views, dicoms):
      acquisition = render.sample_acquisition(rngs["render"], knobs, view, task.image_size)
      rendered = render.render(anatomy, acquisition, study.findings, study.devices,
                               rngs["render"], knobs)
      rows, cols = rendered.image.shape
      _write_bytes(os.path.join(task.out_dir, MIMIC_JPG,
                                layout.image_path(patient.subject_id, study.study_id, dicom)),
                   _jpeg(rendered.image))
      result.n_images += 1
      result.metadata.append([
          dicom, patient.subject_id, study.study_id, exam_name(study), view, rows, cols,
          layout.study_date(study.when), layout.study_time(study.when), exam_name(study),
          VIEW_MEANING[view], ORIENTATION[view]])
      result.mimic_split.append([dicom, study.study_id, patient.subject_id, task.mimic_split])
      if view == "LATERAL":
        continue
      previous = (frontal_ids[study.index - 1], patient.studies[study.index - 1]) \
          if study.index > 0 else None
      graph = scene_graph.build_scene_graph(
          dicom_id=dicom, patient=patient, study=study, report=report,
          region_boxes=rendered.region_boxes, rows=rows, cols=cols, previous=previous)
      _write_bytes(os.path.join(task.out_dir, IMAGENOME, "scene_graph",
                                f"{dicom}_SceneGraph.json"),
                   json.dumps(graph).encode("utf-8"))
      row = [patient.subject_id, study.study_id, dicom,
             layout.image_path(patient.subject_id, study.study_id, dicom, "dcm"), view]
      result.imagenome.append((task.imagenome_split, row))
      if task.gold:
        result.gold.append(row)
      if task.keep_preview:
        labels = [(f"{f.level + ' ' if f.level else ''}{f.name}", box)
                  for f, boxes in zip(study.findings, rendered.finding_boxes) for box in boxes]
        title = f"p{patient.subject_id} #{study.index} {view}"
        result.preview.append((rendered.image, rendered.region_boxes, labels, title))
    labels = reports.chexpert_labels(study, report)
    result.labels.append([patient.subject_id, study.study_id]
                         + [labels[c] for c in reports.CHEXPERT_COLUMNS])
    result.mimic_all.append(result.labels[-1] + [
        dicoms[0], VIEW_MEANING[study.view], task.mimic_split, dates[study.index],
        repr(orders[study.index])])
    result.key_info.append(vqa.key_info(patient.subject_id, study.study_id, study.findings,
                                        report.negated))
  for main in patient.studies[1:]:
    ref = patient.studies[int(rngs["vqa"].integers(main.index))]
    result.n_pairs += 1
    for qtype, question, answer in vqa.pair_questions(
        main.view, main.findings, ref.findings, negated[main.index], rngs["vqa"],
        preset.timeline.p_ap_view_question):
      result.questions.append([main.study_id, patient.subject_id, ref.study_id, qtype, question,
                               answer])
  return result


def _csv_bytes(header: Sequence[str], rows: Sequence[Sequence[Any]], index: bool) -> bytes:
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
  writer.writerow(([""] if index else []) + list(header))
  for i, row in enumerate(rows):
    writer.writerow(([i] if index else []) + list(row))
  return buf.getvalue().encode("utf-8")


def write_csv(path: str, header: Sequence[str], rows: Sequence[Sequence[Any]], *,
              index: bool = False) -> None:
  """Writes a CSV like pandas ``to_csv`` (minimal quoting, `\\n`); gzipped if path ends in .gz.

  Gzip output has no file name and mtime 0 so that equal content gives equal bytes.
  """
  data = _csv_bytes(header, rows, index)
  if path.endswith(".gz"):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
      gz.write(data)
    data = buf.getvalue()
  _write_bytes(path, data)


def write_tables(out_dir: str, results: Sequence[PatientResult]) -> dict[str, int]:
  """Writes every table of the run from the patients' rows; returns question counts per type."""
  results = sorted(results, key=lambda r: r.index)

  def rows(field: str, key=None) -> list:
    out = [row for r in results for row in getattr(r, field)]
    return sorted(out, key=key) if key else out

  by_ids = lambda row: (row[1], row[2], row[0])
  jpg = os.path.join(out_dir, MIMIC_JPG)
  write_csv(os.path.join(jpg, "mimic-cxr-2.0.0-metadata.csv.gz"), METADATA_COLUMNS,
            rows("metadata", by_ids))
  write_csv(os.path.join(jpg, "mimic-cxr-2.0.0-split.csv.gz"), SPLIT_COLUMNS,
            rows("mimic_split", lambda row: (row[2], row[1], row[0])))
  labels = rows("labels", lambda row: (row[0], row[1]))
  for name in ("chexpert", "negbio"):
    write_csv(os.path.join(jpg, f"mimic-cxr-2.0.0-{name}.csv.gz"), LABEL_COLUMNS, labels)

  splits_dir = os.path.join(out_dir, IMAGENOME, "splits")
  imagenome = [item for r in results for item in r.imagenome]
  for split in layout.IMAGENOME_SPLITS:
    write_csv(os.path.join(splits_dir, f"{split}.csv"), IMAGENOME_COLUMNS,
              [row for s, row in imagenome if s == split], index=True)
  write_csv(os.path.join(splits_dir, "images_to_avoid.csv"), IMAGENOME_COLUMNS, rows("gold"))

  vqa_dir = os.path.join(out_dir, DIFF_VQA)
  questions = rows("questions")
  splits = vqa.assign_splits(len(questions))
  write_csv(os.path.join(vqa_dir, "mimic_pair_questions.csv"), PAIR_COLUMNS,
            [row + [split] for row, split in zip(questions, splits)])
  write_csv(os.path.join(vqa_dir, "mimic_all.csv"), MIMIC_ALL_COLUMNS,
            rows("mimic_all", lambda row: (row[0], row[1])))
  _write_bytes(os.path.join(vqa_dir, "all_diseases.json"),
               json.dumps(rows("key_info"), indent=1).encode("utf-8"))
  counts = {t: 0 for t in vqa.QUESTION_TYPES}
  for row in questions:
    counts[row[3]] += 1
  return counts
