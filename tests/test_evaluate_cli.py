"""Tests of `python -m locvqa_jax.evaluate --predictions FILE.jsonl`."""

import json

import pytest

from locvqa_jax import evaluate
from locvqa_jax.evaluation import nlg

RECORD = {"id": 1, "question_type": "presence", "question": "is there edema?",
          "reference": "yes", "prediction": "no"}
DIFF = {"question_type": "difference",
        "question": "what has changed compared to the reference image?",
        "reference": "the main image has an additional finding of edema than the reference image. ",
        "prediction": "nothing has changed."}


def write_jsonl(path, rows):
  path.write_text("".join(r if isinstance(r, str) else json.dumps(r) + "\n" for r in rows))
  return path


def test_missing_key_names_line_and_key(tmp_path, capsys):
  bad = dict(RECORD)
  del bad["reference"]
  bad["answer"] = "yes"
  path = write_jsonl(tmp_path / "p.jsonl", [RECORD, "\n", bad])
  assert evaluate.main(["--predictions", str(path), "--no_bertscore"]) == 2
  err = capsys.readouterr().err
  assert f"{path} line 3: missing key 'reference'" in err
  assert not (tmp_path / "metrics.json").exists()


def test_invalid_json_and_wrong_type(tmp_path, capsys):
  path = write_jsonl(tmp_path / "p.jsonl", [RECORD, "{not json\n"])
  assert evaluate.main(["--predictions", str(path), "--no_bertscore"]) == 2
  assert "line 2: not valid JSON" in capsys.readouterr().err
  path = write_jsonl(tmp_path / "q.jsonl", [dict(RECORD, prediction=3)])
  assert evaluate.main(["--predictions", str(path), "--no_bertscore"]) == 2
  assert "line 1: key 'prediction' must be a string" in capsys.readouterr().err


def test_bertscore_flags_conflict(tmp_path, capsys):
  path = write_jsonl(tmp_path / "p.jsonl", [RECORD])
  assert evaluate.main(["--predictions", str(path), "--no_bertscore",
                        "--bertscore_model", str(tmp_path)]) == 2
  assert "cannot be combined" in capsys.readouterr().err


def test_predictions_or_nothing(capsys):
  with pytest.raises(SystemExit):
    evaluate.main([])
  assert "--predictions" in capsys.readouterr().err


def test_writes_metrics_and_table(tmp_path, capsys, monkeypatch):
  # The NLG numbers are pinned in tests/evaluation; here only the file and table wiring matter.
  fake_nlg = {"bleu_1": 0.5, "bleu_2": 0.4, "bleu_3": 0.3, "bleu_4": 0.25, "meteor": 0.2,
              "rouge_l": 0.6, "cider": 1.5}
  monkeypatch.setattr(nlg, "require_java", lambda: "java")
  monkeypatch.setattr(nlg, "score_nlg", lambda refs, preds, progress: dict(fake_nlg, n=len(refs)))
  path = write_jsonl(tmp_path / "p.jsonl", [RECORD, DIFF, DIFF])
  out = tmp_path / "out"
  assert evaluate.main(["--predictions", str(path), "--out", str(out), "--no_bertscore",
                        "--no_progress"]) == 0
  metrics = json.loads((out / "metrics.json").read_text())
  assert metrics["predictions_file"] == str(path.resolve())
  assert metrics["overall"]["exact_match"]["closed_accuracy"] == 0.0
  assert metrics["overall"]["findings"]["finding_recall"] == 0.0
  assert metrics["per_question_type"]["difference"]["nlg"]["n"] == 2
  assert metrics["overall"]["nlg"]["cider"] == 1.5
  table = capsys.readouterr().out
  assert "Difference questions (n=2)" in table
  assert "0.2500" in table and "1.5000" in table
  assert "BERTScore: skipped (--no_bertscore)" in table
  assert "presence" in table


def test_missing_java_message(tmp_path, capsys, monkeypatch):
  monkeypatch.setattr("shutil.which", lambda name: None)
  path = write_jsonl(tmp_path / "p.jsonl", [RECORD, DIFF])
  assert evaluate.main(["--predictions", str(path), "--no_bertscore"]) == 2
  err = capsys.readouterr().err
  assert "need Java" in err and "apt-get install default-jre-headless" in err
