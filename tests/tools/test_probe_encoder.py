"""tools/probe_encoder.py: the linear probe's AUCs and its table on a checkpoint."""

import importlib.util
import os

import numpy as np
import pytest

pytest.importorskip("sklearn")

import vqa_fixture  # pylint: disable=g-import-not-at-top

_TOOL = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "probe_encoder.py")


def _tool():
  spec = importlib.util.spec_from_file_location("probe_encoder", _TOOL)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_probe_separates_a_linear_label_and_skips_one_class_labels():
  rng = np.random.RandomState(0)
  x = rng.standard_normal((200, 5))
  y = {"effusion": (x[:, 2] > 0).astype(np.float32), "fracture": np.zeros(200, np.float32)}
  aucs = _tool().probe(x[:150], {k: v[:150] for k, v in y.items()},
                       x[150:], {k: v[150:] for k, v in y.items()}, c=1.0)
  assert aucs["effusion"] > 0.98
  assert aucs["fracture"] is None


def test_main_prints_trained_and_random_columns(tmp_path, monkeypatch, capsys):
  workdir = str(tmp_path / "pretrain")
  vqa_fixture.make_pretrain_workdir(workdir)
  tool = _tool()
  rng = np.random.RandomState(1)

  def fake_split(data_dir, config, split, max_images):
    del data_dir, config, max_images
    n = 40 if split == "train" else 20
    bright = np.arange(n) % 2
    images = (rng.uniform(-1, 0, (n, vqa_fixture.RES, vqa_fixture.RES, 1))
              + bright[:, None, None, None]).astype(np.float32)
    return images, {"pleural_effusion": bright.astype(np.float32),
                    "no_finding": np.full(n, np.nan, np.float32)}

  monkeypatch.setattr(tool, "load_split", fake_split)
  assert tool.main(["--workdir", workdir, "--data_dir", "unused", "--random"]) == 0
  out = capsys.readouterr().out
  row = next(line for line in out.splitlines() if line.startswith("pleural_effusion"))
  trained, random_auc = (float(v) for v in row.split()[1:3])
  assert trained > 0.9 and random_auc > 0.9  # Brightness is visible to any encoder.
  assert "no_finding" in out and "mean (random)" in out
