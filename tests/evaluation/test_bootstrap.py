"""Paired-bootstrap margins between two prediction sets (locvqa_jax/evaluation/bootstrap.py)."""

import json
import shutil

import numpy as np
import pytest

from locvqa_jax import evaluate
from locvqa_jax.evaluation import bootstrap
from locvqa_jax.evaluation import findings
from locvqa_jax.evaluation import nlg
from locvqa_jax.evaluation.records import PredictionsFormatError, as_predictions

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="PTBTokenizer needs java")
NO_CIDER = ("finding_f1", "false_change_rate", "closed_accuracy")


def _constant(records, answer="nothing has changed."):
  """The same questions answered like a blind run: a constant difference answer, always no."""
  out = []
  for r in records:
    prediction = answer if r["question_type"] == "difference" else "no"
    out.append(dict(r, prediction=prediction))
  return out


def test_identical_sets_have_zero_margins(golden):
  margins = bootstrap.paired_margins(golden.records, golden.records, resamples=50,
                                     metrics=NO_CIDER)
  assert set(margins) == set(NO_CIDER)
  for m in margins.values():
    assert (m["margin"], m["low"], m["high"], m["resamples"]) == (0.0, 0.0, 0.0, 50)


def test_full_sample_margins_equal_the_metric_differences(golden):
  blind = _constant(golden.records)
  margins = bootstrap.paired_margins(golden.records, blind, resamples=200, metrics=NO_CIDER)
  refs = [r["reference"] for r in golden.difference]
  f1_blind = findings.finding_metrics(refs, [r["prediction"] for r in blind
                                             if r["question_type"] == "difference"])["finding_f1"]
  assert margins["finding_f1"]["margin"] == pytest.approx(golden.findings["finding_f1"] - f1_blind)
  assert margins["false_change_rate"]["margin"] == pytest.approx(
      golden.findings["false_change_rate"] - 0.0)
  # Closed questions: ids 5 (yes), 6 (no), 9 (yes); the model gets 5 and 9, the blind run 6.
  assert margins["closed_accuracy"]["margin"] == pytest.approx(2 / 3 - 1 / 3)
  assert [margins[k]["n"] for k in NO_CIDER] == [5, 2, 3]
  for m in margins.values():
    assert m["low"] <= m["margin"] <= m["high"]


def test_interval_excludes_zero_only_for_a_consistent_margin():
  q = "what has changed compared to the reference image?"
  added = "the main image has an additional finding of edema than the reference image."
  rows = [{"id": k, "question_type": "difference", "question": q,
           "reference": added if k % 2 else "nothing has changed.",
           "prediction": added if k % 2 else "nothing has changed."} for k in range(60)]
  clear = bootstrap.paired_margins(rows, _constant(rows), resamples=500, metrics=NO_CIDER)
  assert clear["finding_f1"]["low"] > 0
  # Right on half the changed pairs and false changes on as many unchanged ones: F1 margin
  # positive, false-change margin clearly positive (worse), neither interval degenerate.
  noisy = [dict(r, prediction=added) if k % 4 in (0, 1) else dict(r) for k, r in enumerate(rows)]
  worse = bootstrap.paired_margins(noisy, rows, resamples=500, metrics=NO_CIDER)
  assert worse["false_change_rate"]["low"] > 0
  assert worse["finding_f1"]["high"] < 0


def test_deterministic_for_a_seed(golden):
  blind = _constant(golden.records)
  run = lambda seed: bootstrap.paired_margins(golden.records, blind, resamples=100, seed=seed,
                                              metrics=NO_CIDER)
  assert run(3) == run(3)
  assert any(run(3)[k] != run(4)[k] for k in NO_CIDER)


def test_pairs_by_id_and_names_what_does_not_pair(golden):
  shuffled = list(reversed(_constant(golden.records)))
  by_id = bootstrap.paired_margins(golden.records, shuffled, resamples=20, metrics=NO_CIDER)
  in_order = bootstrap.paired_margins(golden.records, _constant(golden.records), resamples=20,
                                      metrics=NO_CIDER)
  assert by_id == in_order
  with pytest.raises(PredictionsFormatError, match="3 records"):
    bootstrap.align(as_predictions(golden.records),
                    as_predictions(golden.records[:3]))
  other = [dict(r, id=r["id"] + 100) for r in golden.records]
  with pytest.raises(PredictionsFormatError, match="id 0 .*only in the first"):
    bootstrap.paired_margins(golden.records, other, metrics=NO_CIDER)
  swapped = [dict(r, question="is there edema?") if r["id"] == 5 else r for r in golden.records]
  with pytest.raises(PredictionsFormatError, match="id 5: question/reference"):
    bootstrap.paired_margins(golden.records, swapped, metrics=NO_CIDER)
  with pytest.raises(ValueError, match="unknown metric"):
    bootstrap.paired_margins(golden.records, golden.records, metrics=("bleu",))


@needs_java
def test_per_answer_cider_averages_to_the_corpus_cider(golden):
  refs = [r["reference"] for r in golden.difference]
  preds = [r["prediction"] for r in golden.difference]
  per_answer = nlg.cider_per_answer(refs, preds)
  assert np.mean(per_answer) == pytest.approx(golden.nlg["cider"], abs=1e-9)
  margins = bootstrap.paired_margins(golden.records, _constant(golden.records), resamples=100)
  blind = nlg.cider_per_answer(refs, ["nothing has changed."] * len(refs))
  assert margins["cider"]["margin"] == pytest.approx(golden.nlg["cider"] - np.mean(blind))


def test_compare_flag_prints_and_writes_margins(tmp_path, capsys, monkeypatch, golden):
  monkeypatch.setattr(nlg, "require_java", lambda: "java")
  monkeypatch.setattr(nlg, "score_nlg", lambda refs, preds, progress: dict(cider=1.0, n=len(refs)))
  monkeypatch.setattr(nlg, "cider_per_answer", lambda refs, preds: [
      10.0 if p == r else 0.0 for r, p in zip(refs, preds)])
  a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
  a.write_text("".join(json.dumps(r) + "\n" for r in golden.records))
  b.write_text("".join(json.dumps(r) + "\n" for r in _constant(golden.records, "unchanged.")))
  monkeypatch.setattr(evaluate, "format_metrics", lambda metrics: "")
  assert evaluate.main(["--predictions", str(a), "--compare", str(b), "--no_bertscore",
                        "--no_progress", "--resamples", "100"]) == 0
  out = capsys.readouterr().out
  assert "a.jsonl minus b.jsonl (95 % paired bootstrap over the questions, 100 resamples)" in out
  written = json.loads((tmp_path / "margins.json").read_text())
  assert written["b"] == str(b.resolve())
  # Exact matches on ids 0 and 4 (model) against none (the other file): (10 + 10) / 5.
  assert written["cider"]["margin"] == pytest.approx(4.0)
  assert "difference CIDEr" in out and "+4.0000" in out

  b.write_text("".join(json.dumps(r) + "\n" for r in golden.records[:4]))
  (tmp_path / "metrics.json").unlink()
  assert evaluate.main(["--predictions", str(a), "--compare", str(b), "--no_bertscore"]) == 2
  assert "cannot pair the two prediction sets: 10 against 4 records" in capsys.readouterr().err
  assert not (tmp_path / "metrics.json").exists()
