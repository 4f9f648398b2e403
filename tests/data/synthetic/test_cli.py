"""End-to-end tests of the synthetic generator's command line with a tiny stand-in renderer.

The generated files are read back with csv/gzip/json only (no generator code) and checked
against DATA_FORMATS.md: column orders, id formats, StudyTime floats, Rows/Columns vs the JPGs,
report layout, scene-graph keys and the 224-canvas formula, question templates, answer vocabulary
and the split fractions.
"""

import csv
import dataclasses
import gzip
import hashlib
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import types

import numpy as np
import pytest
from PIL import Image

from locvqa_jax.data import synthetic
from locvqa_jax.data.synthetic import __main__ as cli
from locvqa_jax.data.synthetic.truth import Rendered

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
HAS_RENDERER = importlib.util.find_spec("locvqa_jax.data.synthetic.render") is not None

BBOX_NAMES = (
    "right lung, right upper lung zone, right mid lung zone, right lower lung zone, "
    "right hilar structures, right apical zone, right costophrenic angle, "
    "right cardiophrenic angle, right hemidiaphragm, left lung, left upper lung zone, "
    "left mid lung zone, left lower lung zone, left hilar structures, left apical zone, "
    "left costophrenic angle, left hemidiaphragm, trachea, spine, right clavicle, left clavicle, "
    "aortic arch, mediastinum, upper mediastinum, svc, cardiac silhouette, "
    "left cardiac silhouette, right cardiac silhouette, cavoatrial junction, right atrium, "
    "descending aorta, carina, left upper abdomen, right upper abdomen, abdomen, "
    "left cardiophrenic angle").split(", ")


# ---------------------------------------------------------------------------- stand-in renderer
@dataclasses.dataclass(frozen=True)
class _Knobs:
  contrast: float


@dataclasses.dataclass(frozen=True)
class _Acquisition:
  rows: int
  cols: int
  view: str
  shift: float


def _sample_anatomy(rng, knobs):
  return {"lung_width": float(rng.uniform(0.3, 0.4)), "contrast": knobs.contrast}


def _sample_acquisition(rng, knobs, view, image_size):
  del knobs
  cols = image_size - int(rng.integers(0, image_size // 6))
  return _Acquisition(rows=image_size, cols=cols, view=view, shift=float(rng.uniform(-3, 3)))


def _render(anatomy, acquisition, findings, devices, rng, knobs):
  del devices
  rows, cols = acquisition.rows, acquisition.cols
  image = (rng.integers(0, 40, size=(rows, cols)) * knobs.contrast).astype(np.uint8)
  boxes = {}
  if acquisition.view != "LATERAL":
    for k, name in enumerate(BBOX_NAMES):
      x = (k % 6) * cols / 6 + acquisition.shift
      y = (k // 6) * rows / 6
      # One box sticks out of the image, as real ones can.
      boxes[name] = (x - (5 if k == 0 else 0), y, x + cols / 6 * anatomy["lung_width"] * 2,
                     y + rows / 6)
  finding_boxes = []
  for f in findings:
    side = "left" if f.side in ("left", None) else "right"
    box = boxes.get(f"{side} lung")
    if box is not None:
      x1, y1, x2, y2 = (int(v) for v in box)
      image[max(y1, 0):y2, max(x1, 0):x2] = min(255, 100 + int(155 * f.severity))
    finding_boxes.append([box] if box is not None else [])
  return Rendered(image=image, region_boxes=boxes, finding_boxes=finding_boxes)


def _draw_preview(items, path, columns=4):
  del columns
  with open(path, "wb") as f:
    f.write(f"{len(items)} items".encode())


@pytest.fixture(autouse=True)
def stand_in_renderer(monkeypatch):
  render = types.ModuleType("locvqa_jax.data.synthetic.render")
  render.RenderKnobs = _Knobs
  render.RENDER_PRESETS = {"easy": _Knobs(1.0), "realistic": _Knobs(0.5)}
  render.sample_anatomy = _sample_anatomy
  render.sample_acquisition = _sample_acquisition
  render.render = _render
  preview = types.ModuleType("locvqa_jax.data.synthetic.preview")
  preview.draw_preview = _draw_preview
  # Forked workers inherit the stand-in; the command's default start method would not.
  monkeypatch.setattr(cli, "START_METHOD", "fork")
  for name, module in (("render", render), ("preview", preview)):
    monkeypatch.setitem(sys.modules, f"locvqa_jax.data.synthetic.{name}", module)
    monkeypatch.setattr(synthetic, name, module, raising=False)


def _generate(out, *extra, patients=6, seed=3, size=128):
  argv = ["--out", str(out), "--patients", str(patients), "--seed", str(seed),
          "--image-size", str(size), *extra]
  assert cli.main(argv) == 0
  return out


# --------------------------------------------------------------------- independent file readers
def _read_csv(path):
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rt", newline="") as f:
    rows = list(csv.reader(f))
  return rows[0], rows[1:]


def _dicts(path):
  header, rows = _read_csv(path)
  return [dict(zip(header, row)) for row in rows]


def _tree_digest(root):
  digest = {}
  for folder, _, files in os.walk(root):
    for name in files:
      path = os.path.join(folder, name)
      with open(path, "rb") as f:
        digest[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
  return digest


SUBJECT_RE = re.compile(r"^1\d{7}$")
STUDY_RE = re.compile(r"^5\d{7}$")
DICOM_RE = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{8}){4}$")
CHEXPERT = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum",
            "Fracture", "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion",
            "Pleural Other", "Pneumonia", "Pneumothorax", "Support Devices"]
FINDINGS = [
    "pleural effusion", "atelectasis", "cardiomegaly", "enlargement of the cardiac silhouette",
    "edema", "hernia", "vascular congestion", "hilar congestion", "pneumothorax", "heart failure",
    "lung opacity", "pneumonia", "tortuosity of the descending aorta", "scoliosis",
    "gastric distention", "hypoxemia", "hypertensive heart disease", "hematoma",
    "tortuosity of the thoracic aorta", "contusion", "emphysema", "granuloma", "calcification",
    "pleural thickening", "thymoma", "blunting of the costophrenic angle", "consolidation",
    "fracture", "pneumomediastinum", "air collection"]
LOCATION_WORDS = ("mid to lower, left, right, retrocardiac, pericardial, bibasilar, bilateral, "
                  "basilar, apicolateral, basal, left-sided, lobe, lung, area, base, right-sided, "
                  "apical, pleural, upper, lower, middle, mid, rib").split(", ")
LEVEL_WORDS = ("moderately, moderate, acute, mildly, mild, small, severe, moderate to large, "
               "moderate to severe, mild to moderate, minimal, subtle, massive, minimally, "
               "increasing, decreasing, minor").split(", ")
TYPE_WORDS = ("interstitial, layering, dense, parenchymal, compressive, obstructive, linear, "
              "plate-like, patchy, ground-glass, calcified, scattered, focal, multifocal, "
              "multi-focal").split(", ")
TEMPLATE_WORDS = ("what abnormalities are seen in this image is there evidence of any the area "
                  "bilateral which view taken pa ap where located on left side or right level "
                  "type has changed compared to reference main an additional finding than "
                  "findings and missing from nothing yes no lung").split()
VOCAB = set(TEMPLATE_WORDS)
for phrase in FINDINGS + LOCATION_WORDS + LEVEL_WORDS + TYPE_WORDS:
  VOCAB.update(phrase.split())

X = "(?P<x>[a-z ]+)"
QUESTION_RES = {
    "abnormality": [r"what abnormalities are seen in this image\?",
                    r"is there evidence of any abnormalities in this image\?"],
    "presence": [rf"is there evidence of {X} in this image\?", rf"is there {X} in the [a-z ]+ area\?",
                 rf"is the {X} bilateral\?", rf"is there {X}\?"],
    "view": [r"which view is this image taken\?", r"is this (PA|AP) view\?"],
    "location": [rf"where in the image is the {X} located\?", rf"where is the {X}\?",
                 rf"is the {X} located on the left side or right side\?"],
    "level": [rf"what level is the {X}\?"],
    "type": [rf"what type is the {X}\?"],
    "difference": [r"what has changed compared to the reference image\?",
                   r"what has changed in the [a-z ]+ area\?"],
}
_ITEM = "[a-z ]+"
_ITEMS = rf"{_ITEM}(, {_ITEM})*, and {_ITEM}"
DIFF_SENTENCE = re.compile(
    rf"the level of {_ITEM} has changed from {_ITEM} to {_ITEM}\. "
    rf"|the main image has an additional finding of {_ITEM} than the reference image\. "
    rf"|the main image has additional findings of {_ITEMS} than the reference image\. "
    rf"|the main image is missing the finding of {_ITEM} than the reference image\. "
    rf"|the main image is missing the findings of {_ITEMS} than the reference image\. ")


# ------------------------------------------------------------------------------------------ tests
def test_same_seed_is_byte_identical_for_any_worker_count(tmp_path):
  one = _tree_digest(_generate(tmp_path / "one", "--workers", "1"))
  two = _tree_digest(_generate(tmp_path / "two", "--workers", "2"))
  assert one == two
  assert any(p.endswith(".jpg") for p in one) and any(p.endswith(".json") for p in one)
  other = _tree_digest(_generate(tmp_path / "other", seed=4))
  assert other != one


def test_refuses_non_empty_output_unless_overwrite(tmp_path):
  out = tmp_path / "out"
  out.mkdir()
  (out / "keep.txt").write_text("x")
  with pytest.raises(SystemExit, match="not empty; pass --overwrite"):
    _generate(out)
  _generate(out, "--overwrite")
  assert not (out / "keep.txt").exists()
  assert (out / "medical-diff-vqa" / "mimic_pair_questions.csv").exists()


def test_summary_and_preview(tmp_path, capsys):
  _generate(tmp_path / "out", "--preview", str(tmp_path / "preview.png"))
  text = capsys.readouterr().out
  assert "patients 6" in text and "difference" in text and "pairs" in text
  assert (tmp_path / "preview.png").read_bytes() == b"8 items"


def test_mimic_cxr_jpg_tables_and_images(tmp_path):
  out = _generate(tmp_path / "out", patients=12)
  jpg = str(out / "mimic-cxr-jpg")
  header, rows = _read_csv(f"{jpg}/mimic-cxr-2.0.0-metadata.csv.gz")
  assert header == ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription",
                    "ViewPosition", "Rows", "Columns", "StudyDate", "StudyTime",
                    "ProcedureCodeSequence_CodeMeaning", "ViewCodeSequence_CodeMeaning",
                    "PatientOrientationCodeSequence_CodeMeaning"]
  studies = {}
  for row in map(dict, (zip(header, r) for r in rows)):
    assert DICOM_RE.match(row["dicom_id"]) and len(row["dicom_id"]) == 44
    assert SUBJECT_RE.match(row["subject_id"]) and STUDY_RE.match(row["study_id"])
    assert 21000101 <= int(row["StudyDate"]) <= 22001231
    assert re.fullmatch(r"[1-9]\d{0,5}\.\d{1,3}|0\.\d{1,3}", row["StudyTime"])
    hhmmss = "%010.3f" % float(row["StudyTime"])
    assert int(hhmmss[:2]) < 24 and int(hhmmss[2:4]) < 60 and int(hhmmss[4:6]) < 60
    assert row["ViewPosition"] in ("PA", "AP", "LATERAL")
    path = (f"{jpg}/files/p{row['subject_id'][:2]}/p{row['subject_id']}/s{row['study_id']}/"
            f"{row['dicom_id']}.jpg")
    with Image.open(path) as image:
      assert image.mode == "L"
      assert image.size == (int(row["Columns"]), int(row["Rows"]))
    key = row["study_id"]
    assert studies.setdefault(key, (row["StudyDate"], row["StudyTime"])) == (
        row["StudyDate"], row["StudyTime"])
  views = [r[4] for r in rows]
  assert "LATERAL" in views and "PA" in views
  split = _dicts(f"{jpg}/mimic-cxr-2.0.0-split.csv.gz")
  assert list(split[0]) == ["dicom_id", "study_id", "subject_id", "split"]
  by_subject = {}
  for row in split:
    by_subject.setdefault(row["subject_id"], set()).add(row["split"])
  assert all(len(s) == 1 for s in by_subject.values())
  assert set().union(*by_subject.values()) == {"train", "validate", "test"}
  for name in ("chexpert", "negbio"):
    header, rows = _read_csv(f"{jpg}/mimic-cxr-2.0.0-{name}.csv.gz")
    assert header == ["subject_id", "study_id"] + CHEXPERT
    assert len(rows) == len(studies)
    assert {v for r in rows for v in r[2:]} <= {"1.0", "0.0", "-1.0", ""}
    assert any(all(v == "" for v in r[2:]) for r in rows), "some studies carry no label"


def test_reports_sit_in_the_patient_folder_in_mimic_style(tmp_path):
  out = _generate(tmp_path / "out", patients=12)
  studies = _dicts(str(out / "mimic-cxr-jpg" / "mimic-cxr-2.0.0-chexpert.csv.gz"))
  with_impression = 0
  for row in studies:
    subject, study = row["subject_id"], row["study_id"]
    path = out / "mimic-cxr-reports" / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}.txt"
    text = path.read_text()
    assert text.split("\n")[0].strip() == "FINAL REPORT"
    for line in text.rstrip("\n").split("\n"):
      assert line.startswith(" ") and len(line) <= 79, line
    assert re.search(r"\n EXAMINATION: ", text) and re.search(r"\n INDICATION: .*___", text)
    with_impression += "\n IMPRESSION:" in text
  assert 0 < with_impression < len(studies)


def test_chest_imagenome_scene_graphs_and_splits(tmp_path):
  out = _generate(tmp_path / "out", patients=12)
  meta = {r["dicom_id"]: r for r in _dicts(str(out / "mimic-cxr-jpg" /
                                                "mimic-cxr-2.0.0-metadata.csv.gz"))}
  silver = out / "chest-imagenome" / "silver_dataset"
  split_rows, subjects = [], {}
  for split in ("train", "valid", "test"):
    header, rows = _read_csv(str(silver / "splits" / f"{split}.csv"))
    assert header == ["", "subject_id", "study_id", "dicom_id", "path", "ViewPosition"]
    assert [r[0] for r in rows] == [str(i) for i in range(len(rows))]
    for r in rows:
      subjects.setdefault(r[1], set()).add(split)
      assert r[4] == f"files/p{r[1][:2]}/p{r[1]}/s{r[2]}/{r[3]}.dcm"
    split_rows += rows
  assert all(len(s) == 1 for s in subjects.values())
  avoid_header, avoid = _read_csv(str(silver / "splits" / "images_to_avoid.csv"))
  assert avoid_header == ["subject_id", "study_id", "dicom_id", "path", "ViewPosition"] and avoid
  frontal = {d for d, r in meta.items() if r["ViewPosition"] in ("PA", "AP")}
  graphs = sorted(os.listdir(silver / "scene_graph"))
  assert graphs == sorted(f"{d}_SceneGraph.json" for d in frontal)
  assert {r[3] for r in split_rows} == frontal
  n_relationships = 0
  for name in graphs:
    graph = json.loads((silver / "scene_graph" / name).read_text())
    dicom = graph["image_id"]
    row = meta[dicom]
    assert {"image_id", "viewpoint", "patient_id", "study_id", "gender", "age_decile",
            "reason_for_exam", "objects", "attributes", "relationships"} <= set(graph)
    assert graph["viewpoint"] == row["ViewPosition"]
    assert graph["patient_id"] == int(row["subject_id"]) and graph["study_id"] == int(
        row["study_id"])
    assert re.fullmatch(r"\d0-\d+0", graph["age_decile"])
    rows_px, cols_px = int(row["Rows"]), int(row["Columns"])
    ratio = 224 / max(rows_px, cols_px)
    left, top = (224 - cols_px * ratio) / 2, (224 - rows_px * ratio) / 2
    assert sorted(o["bbox_name"] for o in graph["objects"]) == sorted(BBOX_NAMES)
    for o in graph["objects"]:
      assert o["object_id"] == f"{dicom}_{o['bbox_name']}"
      assert all(isinstance(o[k], int) for k in ("x1", "y1", "x2", "y2", "width", "height",
                                                  "original_x1", "original_y2"))
      assert abs(o["x1"] - (o["original_x1"] * ratio + left)) <= 0.5
      assert abs(o["y2"] - (o["original_y2"] * ratio + top)) <= 0.5
      assert o["width"] == o["x2"] - o["x1"] and o["original_height"] == (
          o["original_y2"] - o["original_y1"])
      assert isinstance(o["synsets"], list) and isinstance(o["name"], str)
    subject = row["subject_id"]
    report = (out / "mimic-cxr-reports" / "files" / f"p{subject[:2]}" / f"p{subject}" /
              f"s{row['study_id']}.txt").read_text()
    flat = " ".join(report.split())
    for a in graph["attributes"]:
      region = a["bbox_name"]
      assert a[region] is True and a["object_id"] == f"{dicom}_{region}"
      n = len(a["phrases"])
      for key in ("attributes", "attributes_ids", "phrase_IDs", "sections", "comparison_cues",
                  "temporal_cues", "severity_cues", "texture_cues"):
        assert len(a[key]) == n, key
      for phrase, attrs, pid in zip(a["phrases"], a["attributes"], a["phrase_IDs"]):
        assert " ".join(phrase.split()) in flat
        assert re.fullmatch(rf"{row['study_id']}\|\d+", pid)
        assert all(re.fullmatch(r"[a-z]+\|(yes|no)\|[a-z /()-]+", s) for s in attrs)
        assert ("nlp|yes|normal" in attrs) != ("nlp|yes|abnormal" in attrs)
    for rel in graph["relationships"]:
      n_relationships += 1
      assert rel["subject_id"] == f"{dicom}_{rel['bbox_name']}"
      assert rel["object_id"].endswith(f"_{rel['bbox_name']}")
      assert rel["relationship_names"][0] in ("comparison|yes|improved", "comparison|yes|worsened",
                                              "comparison|yes|no change")
  assert n_relationships > 0


def test_medical_diff_vqa_files(tmp_path):
  out = _generate(tmp_path / "out", patients=12)
  vqa_dir = str(out / "medical-diff-vqa")
  header, rows = _read_csv(f"{vqa_dir}/mimic_pair_questions.csv")
  assert header == ["study_id", "subject_id", "ref_id", "question_type", "question", "answer",
                    "split"]
  all_header, all_rows = _read_csv(f"{vqa_dir}/mimic_all.csv")
  assert all_header == ["subject_id", "study_id"] + CHEXPERT + [
      "dicom_id", "view", "split", "study_date", "study_order"]
  studies = {r[1]: dict(zip(all_header, r)) for r in all_rows}
  for subject in {r["subject_id"] for r in studies.values()}:
    mine = [r for r in studies.values() if r["subject_id"] == subject]
    for r in mine:
      rank = 1 + sum(int(o["study_date"]) < int(r["study_date"]) for o in mine)
      assert r["study_order"] == f"{float(rank)}"
  meta = {r["dicom_id"]: r for r in _dicts(f"{out}/mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv.gz")}
  for r in studies.values():
    assert meta[r["dicom_id"]]["ViewCodeSequence_CodeMeaning"] == r["view"]
    assert r["view"] in ("postero-anterior", "antero-posterior")

  n = len(rows)
  train_end, val_end = math.ceil(0.8 * n), math.ceil(0.9 * n)
  assert [r[6] for r in rows] == ["train"] * train_end + ["val"] * (val_end - train_end) + [
      "test"] * (n - val_end)
  pairs, seen_subjects, order = {}, [], {t: i for i, t in enumerate(QUESTION_RES)}
  for study_id, subject_id, ref_id, qtype, question, answer, _ in rows:
    main, ref = studies[study_id], studies[ref_id]
    assert main["subject_id"] == ref["subject_id"] == subject_id
    assert float(ref["study_order"]) < float(main["study_order"])
    if not seen_subjects or seen_subjects[-1] != subject_id:
      assert subject_id not in seen_subjects, "rows must be patient-contiguous"
      seen_subjects.append(subject_id)
    types_so_far = pairs.setdefault((study_id, ref_id), [])
    assert not types_so_far or order[types_so_far[-1]] < order[qtype]
    types_so_far.append(qtype)
    match = next((re.fullmatch(p, question) for p in QUESTION_RES[qtype]
                  if re.fullmatch(p, question)), None)
    assert match, (qtype, question)
    if "x" in match.groupdict():
      assert match["x"] in FINDINGS, question
    words = re.findall(r"[a-z-]+", (question + " " + answer).lower())
    assert set(words) <= VOCAB, set(words) - VOCAB
    if qtype == "difference":
      assert answer == "nothing has changed." or DIFF_SENTENCE.sub("", answer) == "", answer
    if qtype == "view":
      assert main["view"] in ("postero-anterior", "antero-posterior")
  pair_list = list(pairs)
  assert len(pair_list) == len(set(pair_list)) == sum(1 for r in rows if r[3] == "difference")
  assert all(types[-1] == "difference" for types in pairs.values())
  assert {r[3] for r in rows} == set(QUESTION_RES)

  with open(f"{vqa_dir}/all_diseases.json") as f:
    key_info = json.load(f)
  assert len(key_info) == len(studies)
  for record in key_info:
    assert set(record) == {"study_id", "subject_id", "entity", "no_entity"}
    assert isinstance(record["study_id"], str) and isinstance(record["subject_id"], str)
    for name, entity in record["entity"].items():
      assert name in FINDINGS and entity["entity_name"] == name
      assert set(entity) == {"entity_name", "location", "type", "level", "post_location",
                             "location2", "type2", "level2", "post_location2"}
      assert entity["location"] is None or set(entity["location"]) <= set(LOCATION_WORDS)
      assert entity["level"] is None or set(entity["level"]) <= set(LEVEL_WORDS)
      assert entity["type"] is None or set(entity["type"]) <= set(TYPE_WORDS)


def test_knob_overrides_reach_the_renderer(tmp_path, capsys):
  default = _tree_digest(_generate(tmp_path / "default"))
  changed = _tree_digest(_generate(tmp_path / "changed", "--knob", "contrast=3"))
  assert "(easy, contrast=3.0," in capsys.readouterr().out
  assert changed != default
  assert changed == _tree_digest(_generate(tmp_path / "again", "--knob", "contrast=3"))
  with pytest.raises(SystemExit):
    _generate(tmp_path / "typo", "--knob", "contrst=3")
  assert "did you mean 'contrast'?" in capsys.readouterr().err
  assert not (tmp_path / "typo").exists()


def test_parse_knobs_against_the_renderer_settings():
  from locvqa_jax.data.synthetic.knobs import RENDER_PRESETS
  base = RENDER_PRESETS["easy"]
  assert cli.parse_knobs(["shift_frac=0.08", "ap_heart_magnification=1.1,1.3"], base) == (
      ("ap_heart_magnification", (1.1, 1.3)), ("shift_frac", 0.08))
  assert cli.parse_knobs([], base) == ()
  for item, message in (("shift_frac", "expected NAME=VALUE"),
                        ("shift=0.1", "did you mean 'shift_frac'"),
                        ("shift_frac=wide", "'wide' is not a number"),
                        ("ap_heart_magnification=1.1", "takes 2 comma-separated numbers"),
                        ("shift_frac=-0.1", "must be a non-negative number"),
                        ("equalize=2", r"must lie in \[0, 1\]")):
    with pytest.raises(ValueError, match=message):
      cli.parse_knobs([item], base)


def test_help_runs_as_a_module():
  result = subprocess.run([sys.executable, "-m", "locvqa_jax.data.synthetic", "--help"],
                          capture_output=True, text=True, check=True, cwd=REPO)
  assert "--patients" in result.stdout and "--preset" in result.stdout


@pytest.mark.skipif(not HAS_RENDERER, reason="the renderer module is not in this checkout")
def test_real_renderer_end_to_end_with_a_worker_pool(tmp_path):
  out = tmp_path / "out"
  result = subprocess.run(
      [sys.executable, "-m", "locvqa_jax.data.synthetic", "--out", str(out), "--patients", "2",
       "--seed", "0", "--image-size", "96", "--preset", "realistic", "--workers", "2",
       "--preview", str(tmp_path / "preview.png")], capture_output=True, text=True, cwd=REPO)
  assert result.returncode == 0, result.stderr
  assert "patients 2" in result.stdout
  with Image.open(tmp_path / "preview.png") as image:
    assert image.size[0] > 0
  for row in _dicts(str(out / "mimic-cxr-jpg" / "mimic-cxr-2.0.0-metadata.csv.gz")):
    path = (out / "mimic-cxr-jpg" / "files" / f"p{row['subject_id'][:2]}" /
            f"p{row['subject_id']}" / f"s{row['study_id']}" / f"{row['dicom_id']}.jpg")
    with Image.open(path) as image:
      assert image.size == (int(row["Columns"]), int(row["Rows"])) and image.mode == "L"
      assert max(image.size) == 96
