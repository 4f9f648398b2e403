"""All three builders on the synthetic generator's output (6 patients, 128 px images).

Expected counts are computed from the generated tables with csv/gzip, independently of the
builders' readers.
"""

import collections
import csv
import gzip
import io
import os
import subprocess
import sys

import numpy as np
import pytest

import tiny_raw
from tfds_builders.common import builder_base

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPLITS = {"train": "train", "validate": "validation", "valid": "validation", "val": "validation",
          "test": "test"}


def _rows(path):
  data = open(path, "rb").read()
  if path.endswith(".gz"):
    data = gzip.decompress(data)
  return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("synthetic") / "raw")
  subprocess.run([sys.executable, "-m", "locvqa_jax.data.synthetic", "--out", out,
                  "--patients", "6", "--image-size", "128", "--seed", "0"], cwd=ROOT, check=True,
                 env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, timeout=600)
  return out


def _split_counts(builder):
  return {k: v.num_examples for k, v in builder.info.splits.items()}


def test_mimic_cxr(raw, tmp_path):
  rows = _rows(os.path.join(raw, "mimic-cxr-jpg", "mimic-cxr-2.0.0-split.csv.gz"))
  expected = collections.Counter(SPLITS[r["split"]] for r in rows)
  builder = tiny_raw.build(raw, str(tmp_path), "mimic_cxr", workers=2)
  assert _split_counts(builder) == dict(expected)
  examples = tiny_raw.read_all(builder, "train")
  assert all(ex["image"].shape == (128, 128, 1) for ex in examples)
  assert all(len(ex["study_datetime"]) == 23 for ex in examples)
  assert sum(bool(ex["findings"] or ex["impression"]) for ex in examples) > len(examples) // 2
  assert builder_base.read_summary(builder.data_dir)["skipped_bad_examples"] == {}


def test_chest_imagenome(raw, tmp_path):
  silver = os.path.join(raw, "chest-imagenome", "silver_dataset")
  graphs = {n.removesuffix("_SceneGraph.json") for _, _, names in
            os.walk(os.path.join(silver, "scene_graph")) for n in names}
  avoid = {r["dicom_id"] for r in _rows(os.path.join(silver, "splits", "images_to_avoid.csv"))}
  expected = {}
  for name, split in (("train", "train"), ("valid", "validation"), ("test", "test")):
    dicoms = [r["dicom_id"] for r in _rows(os.path.join(silver, "splits", f"{name}.csv"))]
    n = sum(d in graphs and d not in avoid for d in dicoms)
    if n:
      expected[split] = n
  builder = tiny_raw.build(raw, str(tmp_path), "chest_imagenome", workers=2)
  assert _split_counts(builder) == expected
  for ex in tiny_raw.read_all(builder, "train"):
    boxes = np.asarray(ex["objects"]["bbox"])
    assert len(boxes) > 20 and (boxes >= 0).all() and (boxes <= 1).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert len(ex["phrases"]["text"]) >= len(boxes)


def test_mimic_diff_vqa(raw, tmp_path):
  rows = _rows(os.path.join(raw, "medical-diff-vqa", "mimic_pair_questions.csv"))
  pairs = collections.Counter()
  for r in {(r["study_id"], r["ref_id"], SPLITS[r["split"]]) for r in rows}:
    pairs[r[2]] += 1
  builder = tiny_raw.build(raw, str(tmp_path), "mimic_diff_vqa", workers=2)
  assert _split_counts(builder) == dict(pairs)
  seen = []
  for split in pairs:
    for ex in tiny_raw.read_all(builder, split):
      seen.extend(int(i) for i in ex["questions"]["row_index"])
      for i, answer in zip(ex["questions"]["row_index"], ex["questions"]["answer"]):
        assert answer.decode() == rows[i]["answer"]
  assert sorted(seen) == list(range(len(rows)))
  counts = builder_base.read_summary(builder.data_dir)["counts"]
  assert counts["questions"] == len(rows)
