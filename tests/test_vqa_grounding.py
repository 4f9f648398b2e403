"""evaluate --grounding: boxes for the findings answers name, their truth, the metrics section."""

import json
import os

import numpy as np
import pytest

import vqa_fixture
from locvqa_jax import evaluate
from locvqa_jax import vqa_evaluate
from locvqa_jax import vqa_grounding

RECORDS = {s: vqa_fixture.records(s) for s in ("train", "validation", "test")}
LEFT = [0.2, 0.5, 0.8, 0.9]
EDEMA = b"anatomicalfinding|yes|pulmonary edema/hazy opacity;nlp|yes|abnormal"


class FakeGrounder:
  """Records what it is asked; box i is (i/10, i/10, 1, 1), NaN for phrase 'nothing'."""

  def __init__(self):
    self.calls = []

  def locate_pairs(self, images, phrases, progress=False):
    del progress
    self.calls.append(([np.asarray(images[i]) for i in range(len(images))], list(phrases)))
    out = np.asarray([[i / 10, i / 10, 1, 1] for i in range(len(phrases))], np.float32)
    return out.reshape(-1, 4)


def test_findings_are_located_on_the_image_where_they_are():
  preds = [
      {"row_index": 4000, "question_type": "difference", "reference": "", "prediction":
       "the main image has an additional finding of edema than the reference image. the main "
       "image is missing the finding of pneumothorax than the reference image. "},
      {"row_index": 4001, "question_type": "presence", "reference": "yes", "prediction": "yes"},
      {"row_index": 4002, "question_type": "difference", "reference": "",
       "prediction": "nothing has changed."}]
  grounder = FakeGrounder()
  out = vqa_grounding.ground_predictions(preds, RECORDS["test"], grounder)
  images, phrases = grounder.calls[0]
  assert phrases == ["edema", "pneumothorax"]
  # Pair 2000: main image 200 (brighter), reference 60.
  assert images[0].shape == (vqa_fixture.RES, vqa_fixture.RES) and images[0].max() == 200
  assert images[1].max() == 60
  first = out[0]["grounding"]
  assert [(e["finding"], e["direction"], e["image"], e["dicom_id"]) for e in first] == [
      ("edema", "added", "main", "m2000"), ("pneumothorax", "missing", "reference", "r2000")]
  assert first[1]["box"] == pytest.approx([0.1, 0.1, 1, 1])
  assert "grounding" not in out[1] and out[2]["grounding"] == []
  assert "grounding" not in preds[0]  # inputs are left as they were
  with pytest.raises(ValueError, match="answers='truth'"):
    vqa_grounding.ground_predictions(preds, RECORDS["test"], grounder, answers="truth")


def _scene(dicom: str, edema: bool) -> dict:
  return {"dicom_id": dicom.encode(), "study_id": b"0",
          "phrases": {"text": [b"Edema."], "bbox_name": [b"left lung"],
                      "bbox": np.asarray([LEFT], np.float32),
                      "attributes": [EDEMA if edema else b"nlp|yes|normal"]}}


# Pair 2002's main image has no edema in its scene graph: one finding without a true box.
TRUTH = {"train": [_scene("m0", True)],
         "test": [_scene(f"m{k}", k != 2002) for k in range(2000, 2012)]}


@pytest.fixture(scope="module")
def vqa_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("grounding")
  pre, vqa = str(root / "pre"), str(root / "vqa")
  vqa_fixture.make_pretrain_workdir(pre)
  vqa_fixture.make_vqa_workdir(vqa, pre, "cached=false")  # pixels: no features cache to build
  return vqa


@pytest.mark.slow  # Decoding and grounding compile: about 30 s on 2 busy cores.
def test_evaluate_workdir_writes_boxes_and_a_grounding_section(vqa_run, capsys):
  result = vqa_evaluate.evaluate_workdir(
      vqa_run, split="test", batch_size=8, score_kwargs=dict(groups=["findings", "grounding"]),
      progress=False, records=RECORDS,
      grounding=dict(answers="reference", truth_records=TRUTH, batch_size=4,
                     constrain_boxes=True))
  with open(os.path.join(result["out_dir"], "predictions.jsonl")) as f:
    preds = [json.loads(line) for line in f]
  grounded = [p for p in preds if p.get("grounding")]
  assert len(grounded) == 6  # the six pairs whose reference names edema
  for p in grounded:
    (e,) = p["grounding"]
    assert (e["finding"], e["image"], e["dicom_id"]) == ("edema", "main", f"m{p['row_index'] // 2}")
    assert len(e["box"]) == 4 and all(0 <= c <= 1 for c in e["box"])
    assert e["truth"] == ([] if e["dicom_id"] == "m2002" else [pytest.approx(LEFT)])
  with open(os.path.join(result["out_dir"], "metrics.json")) as f:
    metrics = json.load(f)
  scores = metrics["overall"]["grounding"]
  assert scores["n"] == 12 and scores["n_named"] == 6
  assert scores["n_boxes"] == 5 and scores["no_truth"] == 1 and scores["no_box"] == 0
  assert scores["baseline_mean_iou"] == pytest.approx(1.0)  # one training box: LEFT itself
  assert 0 <= scores["mean_iou"] <= 1
  assert metrics["grounding_model"]["constrain_boxes"] is True
  assert metrics["grounding_model"]["answers"] == "reference"
  assert "grounding" not in result["columns"]["most frequent"]["overall"]
  table = vqa_evaluate.comparison_table(result["columns"])
  assert "grounding IoU, mean box" in table
  del capsys


def test_cli_grounding_flags_need_a_workdir(tmp_path, capsys):
  path = tmp_path / "p.jsonl"
  path.write_text(json.dumps({"question_type": "presence", "question": "q", "reference": "yes",
                              "prediction": "no"}) + "\n")
  assert evaluate.main(["--predictions", str(path), "--grounding", "--no_bertscore"]) == 2
  assert "go with --workdir" in capsys.readouterr().err
