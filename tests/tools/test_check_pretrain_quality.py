"""The pretraining quality check: loss falls and CAREF beats the per-region mean box."""

import importlib.util
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _tool():
  spec = importlib.util.spec_from_file_location(
      "check_pretrain_quality", os.path.join(REPO, "tools", "check_pretrain_quality.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_table_and_verdict_from_metrics(tmp_path):
  tool = _tool()
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 10, "train/loss": 7.0}\n{"step": 20, "train/loss": 3.0}\n'
                  '{"step": 20, "val/loss": 3.1, "val/loss_caref": 4.0, "val/caref_iou": 0.7, '
                  '"val/caref_acc50": 0.8, "val/caref_baseline_iou": 0.6, '
                  '"val/caref_baseline_acc50": 0.7, "val/caref_parsed": 1.0}\n')
  s = tool.summarize(str(path))
  assert (s["first_train_loss"], s["last_train_loss"], s["caref_iou"]) == (7.0, 3.0, 0.7)
  assert tool.passes(s)
  assert "caref     4.000  0.700  0.800    0.600    0.700  1.000" in tool.table(s)
  s["caref_iou"] = 0.5
  assert not tool.passes(s)
  # With phrase-level scores (evaluators/pretrain.py) those decide.
  s.update(caref_phrase_iou=0.65, caref_phrase_baseline_iou=0.62)
  assert tool.passes(s) and "0.650    0.620" in tool.table(s)
  s["caref_phrase_baseline_iou"] = 0.66
  assert not tool.passes(s)


@pytest.mark.slow
def test_tiny_run_beats_the_region_mean_box(tmp_path):
  """The tiny run whose boxes follow the image (tool's READING_RUN): realistic synthetic data
  (1000 patients), builders, tokenizer, 3000 steps of the micro model (about 7 minutes on 2 CPU
  cores)."""
  tool = _tool()
  run = tool.READING_RUN
  data_dir = str(tmp_path / "data")
  tool.build_data(data_dir, preset=run["preset"])
  s = tool.pretrain(data_dir, str(tmp_path / "w"), run["overrides"], run["config_args"])
  print(tool.table(s))
  assert s["last_train_loss"] < s["first_train_loss"]
  assert s["caref_phrase_iou"] > s["caref_phrase_baseline_iou"], tool.table(s)
  named = (s.get("caref_named_iou", float("-inf")), s.get("caref_named_baseline_iou"))
  assert named[0] > named[1], f"named rows: CAREF {named[0]} vs mean box {named[1]}"
  assert s.get("caref_tracking", float("-inf")) > 0.1, tool.table(s)
