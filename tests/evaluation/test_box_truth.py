"""True boxes of named findings from chest_imagenome records and from a tiny built dataset."""

import json
import os
import sys

import numpy as np
import pytest

from locvqa_jax.evaluation import box_truth
from locvqa_jax.evaluation import findings
from locvqa_jax.evaluation.records import PredictionsFormatError

LEFT, RIGHT = [0.2, 0.5, 0.8, 0.9], [0.2, 0.1, 0.8, 0.5]
EDEMA = "anatomicalfinding|yes|pulmonary edema/hazy opacity"


def scene(dicom, study, phrases):
  """A chest_imagenome record as data_source returns it: (bbox_name, box, attributes) rows."""
  return {"dicom_id": dicom.encode(), "study_id": study.encode(),
          "phrases": {"text": [b"phrase"] * len(phrases),
                      "bbox_name": [n.encode() for n, _, _ in phrases],
                      "bbox": np.asarray([b for _, b, _ in phrases], np.float32).reshape(-1, 4),
                      "attributes": [a.encode() for _, _, a in phrases]}}


def test_positive_labels_from_joined_text_and_lists():
  text = b"anatomicalfinding|yes|pleural effusion;nlp|yes|abnormal;disease|no|pneumonia"
  assert box_truth.positive_labels(text) == {"pleural effusion", "abnormal"}
  assert box_truth.positive_labels(["disease|yes|pneumonia", "bad"]) == {"pneumonia"}
  assert box_truth.positive_labels(b"") == set()


def test_every_mapped_name_is_an_official_finding():
  assert set(box_truth.FINDING_LABELS) <= set(findings.FINDINGS)


def test_image_truth_keeps_positive_regions_once():
  record = scene("d1", "s1", [
      ("left lung", LEFT, EDEMA + ";nlp|yes|abnormal"),
      ("left lung", LEFT, EDEMA),  # a second phrase on the same region
      ("right lung", RIGHT, "anatomicalfinding|no|pulmonary edema/hazy opacity"),
      ("right lung", RIGHT, "anatomicalfinding|yes|enlarged cardiac silhouette"),
      ("trachea", [0.5, 0.5, 0.5, 0.6], EDEMA),  # empty box: dropped
  ])
  truth = box_truth.image_truth(record)
  assert [n for n, _ in truth["edema"]] == ["left lung"]
  np.testing.assert_allclose(truth["edema"][0][1], LEFT)
  # One Chest ImaGenome label can stand for two Diff-VQA names.
  assert [n for n, _ in truth["cardiomegaly"]] == ["right lung"]
  assert [n for n, _ in truth["enlargement of the cardiac silhouette"]] == ["right lung"]


def test_index_lookup_by_dicom_then_study_and_mean_boxes():
  train = [scene("t1", "s9", [("left lung", LEFT, EDEMA)]),
           scene("t2", "s9", [("right lung", RIGHT, EDEMA)])]
  test = [scene("d1", "s1", [("left lung", LEFT, EDEMA)]), scene("d2", "s2", [])]
  index = box_truth.build_index({"train": train, "test": test}, dicom_ids={"d1", "d2"},
                                study_ids={"s1"})
  assert [n for n, _ in index.regions("edema", dicom_id="d1")] == ["left lung"]
  assert index.regions("edema", dicom_id="d2") == []  # scene graph without the finding
  assert [n for n, _ in index.regions("edema", dicom_id="other", study_id="s1")] == [
      "left lung"]
  assert index.regions("edema", study_id="s9") == []  # train images only feed the mean boxes
  np.testing.assert_allclose(index.mean_boxes["edema"], [0.2, 0.3, 0.8, 0.7])
  assert "pneumothorax" not in index.mean_boxes


def test_attach_truth_fills_entries_and_keeps_given_truth():
  index = box_truth.build_index({"train": [scene("d1", "s1", [("left lung", LEFT, EDEMA)])]})
  records = [
      {"id": 0, "study_id": "s1", "ref_id": "s0", "grounding": [
          {"finding": "edema", "image": "main", "box": LEFT},
          {"finding": "edema", "image": "reference", "box": LEFT},
          {"finding": "edema", "image": "main", "box": None, "truth": [RIGHT]}]},
      {"id": 1, "question_type": "presence"}]
  out = box_truth.attach_truth(records, index)
  main, ref, given = out[0]["grounding"]
  np.testing.assert_allclose(main["truth"], [LEFT])
  assert main["truth_regions"] == ["left lung"]
  np.testing.assert_allclose(main["mean_box"], LEFT)
  assert ref["truth"] == []  # study s0 is not indexed
  assert given["truth"] == [RIGHT] and "mean_box" not in given
  assert out[1] == records[1]
  assert box_truth.wanted_ids(records) == (set(), {"s1", "s0"})


def test_entry_needs_an_image_id():
  with pytest.raises(PredictionsFormatError, match="needs the record's 'ref_id'"):
    box_truth.wanted_ids([{"id": 3, "grounding": [{"finding": "edema", "image": "reference"}]}])
  with pytest.raises(PredictionsFormatError, match="'image' must be 'main' or 'reference'"):
    box_truth.wanted_ids([{"id": 3, "grounding": [{"finding": "edema", "image": "left"}]}])


@pytest.fixture(scope="module")
def tiny_imagenome(tmp_path_factory):
  """The builders' tiny raw set built as chest_imagenome/r128 (tests/tfds_builders/tiny_raw)."""
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "tfds_builders"))
  import tiny_raw  # pylint: disable=import-outside-toplevel
  root = tmp_path_factory.mktemp("imagenome")
  raw = tiny_raw.write(str(root / "raw"))
  tiny_raw.build(raw, str(root / "tfds"), "chest_imagenome")
  return str(root / "tfds"), tiny_raw


def test_truth_from_a_built_dataset(tiny_imagenome):
  data_dir, tiny = tiny_imagenome
  assert box_truth.built_config(data_dir, "r448") == "r128"
  index = box_truth.open_index(data_dir, dicom_ids={tiny.A}, study_ids={tiny.S3})
  # Image A (train): 'Small right pleural effusion.' is linked to both lungs.
  regions = index.regions("pleural effusion", dicom_id=tiny.A)
  assert [n for n, _ in regions] == ["left lung", "right lung"]
  # Portrait 60x50, right lung (5, 10, 25, 50) in pixels -> frame coordinates.
  np.testing.assert_allclose(dict(regions)["right lung"], [10 / 60, 1 / 6, 50 / 60, 0.5],
                             atol=1e-6)
  assert [n for n, _ in index.regions("pleural effusion", study_id=tiny.S3)] == [
      "left lung", "right lung"]  # D (validation) looked up by its study
  assert index.regions("edema", dicom_id=tiny.A) == []
  assert index.mean_boxes["pleural effusion"].shape == (4,)  # from A and C (train)
  assert index.source.endswith(os.path.join("chest_imagenome", "r128", "1.0.0"))


def test_no_built_dataset_says_how_to_build(tmp_path):
  with pytest.raises(FileNotFoundError, match="tfds_builders.build chest_imagenome"):
    box_truth.open_index(str(tmp_path))


def test_cli_scores_a_file_with_truth_from_data_dir(tiny_imagenome, tmp_path, capsys,
                                                     monkeypatch):
  from locvqa_jax import evaluate  # pylint: disable=import-outside-toplevel
  from locvqa_jax.evaluation import nlg  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(nlg, "require_java", lambda: "java")
  monkeypatch.setattr(nlg, "score_nlg", lambda refs, preds, progress: {"n": len(refs)})
  data_dir, tiny = tiny_imagenome
  right_lung = [10 / 60, 1 / 6, 50 / 60, 0.5]
  row = {"id": 0, "question_type": "difference", "question": "what has changed?",
         "reference": "nothing has changed.", "study_id": tiny.S2, "ref_id": tiny.S1,
         "prediction": "the main image is missing the finding of pleural effusion than the "
                       "reference image. ",
         "grounding": [{"finding": "pleural effusion", "direction": "missing",
                        "image": "reference", "box": right_lung}]}
  path = tmp_path / "p.jsonl"
  path.write_text(json.dumps(row) + "\n")
  assert evaluate.main(["--predictions", str(path), "--no_bertscore", "--no_progress"]) == 2
  assert "pass --data_dir D" in capsys.readouterr().err
  assert evaluate.main(["--predictions", str(path), "--no_bertscore", "--no_progress",
                        "--data_dir", data_dir]) == 0
  scores = json.loads((tmp_path / "metrics.json").read_text())["overall"]["grounding"]
  # Study S1 (the reference) holds image A, whose effusion is linked to both lungs.
  assert scores["n_boxes"] == 1 and scores["mean_iou"] == pytest.approx(1.0, abs=1e-5)
  assert "Grounding of named findings" in capsys.readouterr().out
