"""evaluate --workdir: predictions and metrics files, the blind and most-frequent baselines."""

import json
import os

import ml_collections
import pytest

import vqa_fixture
from locvqa_jax import evaluate
from locvqa_jax import train
from locvqa_jax import vqa_evaluate

RECORDS = {s: vqa_fixture.records(s) for s in ("train", "validation", "test")}
SCORE = dict(groups=["findings", "exact_match"])  # No Java or BERTScore model in this test.


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  pre = str(tmp_path_factory.mktemp("pretrain"))
  vqa_fixture.make_pretrain_workdir(pre)
  root = tmp_path_factory.mktemp("vqa")
  feats = str(root / "features")
  model_dir, blind_dir = str(root / "model"), str(root / "blind")
  quick = {"total_steps": 2, "evals": ml_collections.ConfigDict(), "best.metric": ""}
  train.train_and_evaluate(vqa_fixture.make_config(pre, feats, **quick), model_dir)
  train.train_and_evaluate(vqa_fixture.make_config(pre, feats, "blind", **quick), blind_dir)
  return model_dir, blind_dir


@pytest.mark.slow  # Two short trainings: about a minute on 2 cores.
def test_predictions_metrics_and_baselines(runs):
  model_dir, blind_dir = runs
  result = vqa_evaluate.evaluate_workdir(model_dir, split="test", blind_workdir=blind_dir,
                                         batch_size=8, score_kwargs=SCORE, progress=False,
                                         records=RECORDS)
  out = result["out_dir"]
  assert os.path.basename(out) == "test_2"
  with open(os.path.join(out, "predictions.jsonl")) as f:
    preds = [json.loads(line) for line in f]
  assert len(preds) == 24 and len({p["row_index"] for p in preds}) == 24
  assert {"id", "row_index", "question_type", "question", "reference",
          "prediction"} <= set(preds[0])
  truth = {r: q for r, q in ((p["row_index"], p["reference"]) for p in preds)}
  assert truth[4000] == vqa_fixture.ADDED  # Answers exactly as stored, trailing space kept.
  with open(os.path.join(out, "metrics.json")) as f:
    metrics = json.load(f)
  assert metrics["n"] == 24 and metrics["split"] == "test" and metrics["step"] == 2
  assert set(result["columns"]) == {"model", "blind", "most frequent"}
  assert os.path.exists(os.path.join(out, "metrics_blind.json"))
  assert os.path.exists(os.path.join(out, "metrics_most_frequent.json"))
  with open(os.path.join(out, "margins_blind.json")) as f:
    margins = json.load(f)
  assert margins == result["margins_blind"]
  assert {"cider", "finding_f1", "closed_accuracy"} <= set(margins)
  assert margins["finding_f1"]["low"] <= margins["finding_f1"]["margin"] <= margins[
      "finding_f1"]["high"]
  table = vqa_evaluate.comparison_table(result["columns"])
  assert "finding F1" in table and "closed accuracy" in table and "blind" in table


def test_most_frequent_answer_per_question():
  preds = [{"question": vqa_fixture.CORPUS[0], "question_type": "difference"},
           {"question": "is there a new question?", "question_type": "presence"}]
  base = vqa_evaluate.most_frequent_baseline(preds, RECORDS["train"])
  # Six of twelve training pairs changed: the tie goes to the first answer seen.
  assert base[0]["prediction"] == vqa_fixture.ADDED
  assert base[1]["prediction"] == "yes"


def test_cli_rejects_a_pretraining_workdir(tmp_path, capsys):
  pre = str(tmp_path / "pre")
  vqa_fixture.make_pretrain_workdir(pre)
  with pytest.raises(ValueError, match="evaluate --workdir reads difference-VQA runs"):
    evaluate.main(["--workdir", pre, "--checkpoint", "latest", "--no_bertscore"])
  del capsys
