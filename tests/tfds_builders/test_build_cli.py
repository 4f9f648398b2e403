"""`python -m tfds_builders.build` end to end in a subprocess (no TensorFlow installed)."""

import json
import os
import subprocess
import sys

import tiny_raw

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(*args):
  env = dict(os.environ, PYTHONPATH=ROOT)
  return subprocess.run([sys.executable, "-m", "tfds_builders.build", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)


def test_cli_builds_and_prints_summary(tmp_path):
  raw = tiny_raw.write(str(tmp_path / "raw"), "release")
  out = str(tmp_path / "out")
  result = _run("chest_imagenome", f"--manual_dir={raw}", "--config=r128", f"--data_dir={out}",
                "--workers=2")
  assert result.returncode == 0, result.stderr
  assert "chest_imagenome/r128 build summary" in result.stdout
  assert "split images without a scene graph (skipped): 1" in result.stdout
  with open(os.path.join(out, "chest_imagenome", "r128", "1.0.0", "build_summary.json")) as f:
    assert json.load(f)["counts"]["train_written"] == 2


def test_cli_reports_bad_input(tmp_path):
  raw = tiny_raw.write(str(tmp_path / "raw"))
  os.remove(os.path.join(raw, "medical-diff-vqa", "mimic_all.csv.gz"))
  result = _run("mimic_diff_vqa", f"--manual_dir={raw}", "--config=r128",
                f"--data_dir={tmp_path / 'out'}")
  assert result.returncode == 1
  assert "build failed: missing table mimic_all.csv.gz (or mimic_all.csv)" in result.stderr
  assert not os.path.exists(tmp_path / "out" / "mimic_diff_vqa" / "r128" / "1.0.0")


def test_max_examples_per_split(tmp_path):
  raw = tiny_raw.write(str(tmp_path / "raw"))
  builder = tiny_raw.build(raw, str(tmp_path / "out"), "mimic_cxr", max_examples_per_split=1)
  assert {k: v.num_examples for k, v in builder.info.splits.items()} == {
      "train": 1, "validation": 1, "test": 1}
