"""tools/bench_train.py on both stages' configs (random batches with each config's shapes)."""

import importlib.util
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _tool():
  sys.path.insert(0, os.path.join(REPO, "tools"))
  spec = importlib.util.spec_from_file_location(
      "bench_train", os.path.join(REPO, "tools", "bench_train.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize("config", [
    "configs/pretrain_locca.py:runlocal",
    "configs/diff_vqa.py:runlocal,diff_tokens,image_pos",
])
def test_prints_one_row_for_each_stage(config, tmp_path, capsys):
  argv = ["--config", f"{config},data_dir={tmp_path}", "--steps", "1", "--batch_size", "8",
          "--vocab_size", "1100", "--config.input.text_len=16"]
  assert _tool().main(argv) == 0
  out = capsys.readouterr().out
  header, row = out.strip().splitlines()[-2:]
  assert header.split(" | ")[:3] == ["compile s", "step ms", "examples/s"]
  assert float(row.split("|")[1]) > 0
  assert "global batch 8" in out
