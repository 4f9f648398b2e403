"""Release layouts under manual_dir and the split-name and id rules."""

import os

import pytest

from tfds_builders.common import layout
from tfds_builders.common import mimic_tables
from tfds_builders.common import tables
from tfds_builders.common.issues import BadInputError, BuildSummary


def _jpg_release(path):
  os.makedirs(os.path.join(path, "files"))
  open(os.path.join(path, "mimic-cxr-2.0.0-metadata.csv"), "w").close()


@pytest.mark.parametrize("relative", [
    "mimic-cxr-jpg", "mimic-cxr-jpg/2.1.0", "mimic-cxr-jpg-2.0.0",
    "physionet.org/files/mimic-cxr-jpg/2.1.0"])
def test_mimic_cxr_jpg_layouts(tmp_path, relative):
  _jpg_release(tmp_path / relative)
  assert layout.mimic_cxr_jpg_root(str(tmp_path)) == str(tmp_path / relative)


def test_newest_version_wins(tmp_path):
  _jpg_release(tmp_path / "mimic-cxr-jpg" / "2.0.0")
  _jpg_release(tmp_path / "mimic-cxr-jpg" / "2.1.0")
  assert layout.mimic_cxr_jpg_root(str(tmp_path)).endswith("2.1.0")


def test_chest_imagenome_layouts(tmp_path):
  os.makedirs(tmp_path / "chest-imagenome" / "1.0.0" / "chest-imagenome-dataset-1.0.0" /
              "silver_dataset")
  assert layout.chest_imagenome_root(str(tmp_path)).endswith("chest-imagenome-dataset-1.0.0")


def test_reports_with_or_without_files(tmp_path):
  os.makedirs(tmp_path / "mimic-cxr-reports" / "p10")
  assert layout.reports_root(str(tmp_path)) == str(tmp_path / "mimic-cxr-reports")
  os.makedirs(tmp_path / "mimic-cxr-reports" / "files" / "p11")
  assert layout.reports_root(str(tmp_path)) == str(tmp_path / "mimic-cxr-reports" / "files")


def test_missing_release_lists_what_was_tried(tmp_path):
  os.makedirs(tmp_path / "medical-diff-vqa" / "1.0.1")
  with pytest.raises(BadInputError, match=r"cannot find Medical-Diff-VQA.*medical-diff-vqa/1.0.1"):
    layout.diff_vqa_root(str(tmp_path))


def test_split_names_and_ids(tmp_path):
  path = tmp_path / "t.csv"
  path.write_text("split,id\nvalidate,s50000001\nvalid,50000002\nval,50000003.0\nVALID,x\n")
  summary = BuildSummary(skip_bad_examples=True)
  rows = list(tables.read_table(str(path), ("split", "id"), summary))
  assert [mimic_tables.parse_split(r["split"], r, "split", summary) for r in rows] == [
      "validation"] * 4
  assert [mimic_tables.parse_id(r["id"], "s", r, "id", summary) for r in rows] == [
      "50000001", "50000002", "50000003", None]
  assert summary.quirks["split name 'valid' read as validation"] == 2
  with pytest.raises(BadInputError, match=r"t\.csv line 2: column split: unknown split 'dev'"):
    path.write_text("split\ndev\n")
    row = next(tables.read_table(str(path), ("split",), BuildSummary()))
    mimic_tables.parse_split(row["split"], row, "split", BuildSummary())
