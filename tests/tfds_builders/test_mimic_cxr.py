"""`mimic_cxr` round trips on the tiny raw set, its quirks and its bad-input errors."""

import math
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

import tiny_raw
from tfds_builders.common import builder_base
from tfds_builders.common.issues import BadInputError
import tfds_builders.mimic_cxr  # noqa: F401  (registers the builder)


@pytest.fixture
def raw(tmp_path):
  return tiny_raw.write(str(tmp_path / "raw"), "flat")


def test_round_trip(raw, tmp_path):
  out = str(tmp_path / "out")
  builder = tiny_raw.build(raw, out, "mimic_cxr")
  assert {k: v.num_examples for k, v in builder.info.splits.items()} == {
      "train": 3, "validation": 1, "test": 2}
  train = {ex["dicom_id"].decode(): ex for ex in tiny_raw.read_all(builder, "train")}
  a = train[tiny_raw.A]
  assert a["image"].shape == (128, 128, 1) and a["image"].dtype == np.uint8
  # Portrait 60x50 -> columns outside the resized image are zero padding.
  assert (a["image"][:, :10] == 0).all() and a["image"][:, 20:100].max() > 0
  assert a["study_id"] == b"50000001" and a["subject_id"] == b"10000001"
  assert a["view_position"] == b"PA"
  assert a["study_datetime"] == b"2180-05-06T08:05:56.875"  # StudyTime float re-padded
  assert a["findings"].startswith(b"The lungs are clear. There is a small right")
  assert a["impression"] == b"Small right pleural effusion."
  assert a["report"].decode() == tiny_raw.REPORTS[tiny_raw.S1]
  assert a["chexpert"]["pleural_effusion"] == 1.0 and a["chexpert"]["pneumothorax"] == 0.0
  assert math.isnan(a["chexpert"]["atelectasis"]) and len(a["chexpert"]) == 14
  c = train[tiny_raw.C]
  assert c["view_position"] == b"" and c["impression"] == b"No acute cardiopulmonary process."
  assert c["findings"] == b""
  val = tiny_raw.read_all(builder, "validation")[0]
  assert val["impression"] == b"Heart size is normal. The lungs are clear. No pneumothorax. No effusion."
  test = {ex["dicom_id"].decode(): ex for ex in tiny_raw.read_all(builder, "test")}
  assert all(math.isnan(v) for v in test[tiny_raw.F]["chexpert"].values())  # no CheXpert row
  assert test[tiny_raw.E]["impression"] == b"Mild pulmonary edema."  # CONCLUSION, CRLF
  assert test[tiny_raw.F]["findings"] == b"Left lower lobe opacity."  # FINDNGS
  summary = builder_base.read_summary(builder.data_dir)
  assert summary["quirks_handled"]["StudyTime re-padded (leading zero lost in the float)"] == 3
  assert summary["quirks_handled"]["images without ViewPosition"] == 1
  assert summary["skipped_bad_examples"] == {}
  # Other ways to open the same files.
  reopened = tfds.builder_from_directory(builder.data_dir)
  assert reopened.info.splits["train"].num_examples == 3
  assert tfds.builder("mimic_cxr/r128", data_dir=out).info.splits["test"].num_examples == 2


def test_release_layout_plain_csv_and_worker_pool(tmp_path):
  raw = tiny_raw.write(str(tmp_path / "raw"), "release")
  builder = tiny_raw.build(raw, str(tmp_path / "out"), "mimic_cxr", workers=2)
  assert builder.info.splits["train"].num_examples == 3
  reports = {ex["study_id"]: ex["impression"] for ex in tiny_raw.read_all(builder, "train")}
  assert reports[b"50000001"] == b"Small right pleural effusion."


def test_jpeg_config(raw, tmp_path):
  builder = tiny_raw.build(raw, str(tmp_path / "out"), "mimic_cxr", image_format="jpeg")
  assert builder.builder_config.name == "r128_jpeg"
  image = tiny_raw.read_all(builder, "validation")[0]["image"]
  assert image.shape == (128, 128, 1)


def test_python_api_download_and_prepare(raw, tmp_path):
  builder = tfds.builder("mimic_cxr/r128", data_dir=str(tmp_path / "out"), workers=1)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=raw))
  assert builder.info.splits["validation"].num_examples == 1


def _corrupt(path):
  with open(path, "wb") as f:
    f.write(b"not a jpeg")


def test_unreadable_image_fails_then_skips(raw, tmp_path):
  bad = os.path.join(raw, "mimic-cxr-jpg", "files", "p10", "p10000001", "s50000001",
                     tiny_raw.A + ".jpg")
  _corrupt(bad)
  out = str(tmp_path / "out")
  with pytest.raises(BadInputError, match=rf"{tiny_raw.A}\.jpg: cannot decode image"):
    tiny_raw.build(raw, out, "mimic_cxr")
  # The failed build left no dataset behind (TFDS wrote into a temporary folder).
  assert not os.path.exists(os.path.join(out, "mimic_cxr", "r128", "1.0.0"))
  builder = tiny_raw.build(raw, out, "mimic_cxr", skip_bad_examples=True)
  assert builder.info.splits["train"].num_examples == 2
  summary = builder_base.read_summary(builder.data_dir)
  assert summary["skipped_bad_examples"] == {"unreadable_image": 1}


def test_failed_build_keeps_existing_build(raw, tmp_path):
  out = str(tmp_path / "out")
  good = tiny_raw.build(raw, out, "mimic_cxr")
  info_before = open(os.path.join(good.data_dir, "dataset_info.json")).read()
  os.remove(os.path.join(raw, "mimic-cxr-reports", "files", "p11", "p11000002", "s50000003.txt"))
  with pytest.raises(BadInputError, match=r"s50000003\.txt: report file does not exist"):
    tiny_raw.build(raw, out, "mimic_cxr", config="r224")
  assert open(os.path.join(good.data_dir, "dataset_info.json")).read() == info_before
  assert len(tiny_raw.read_all(good, "train")) == 3


def test_malformed_csv_row_names_file_and_line(raw, tmp_path):
  import gzip
  path = os.path.join(raw, "mimic-cxr-jpg", "mimic-cxr-2.0.0-split.csv.gz")
  lines = gzip.decompress(open(path, "rb").read()).decode().splitlines()
  lines[2] += ",extra"
  open(path, "wb").write(gzip.compress(("\n".join(lines) + "\n").encode()))
  with pytest.raises(BadInputError, match=r"split\.csv\.gz line 3: expected 4 fields, got 5"):
    tiny_raw.build(raw, str(tmp_path / "out"), "mimic_cxr")
  builder = tiny_raw.build(raw, str(tmp_path / "out"), "mimic_cxr", skip_bad_examples=True)
  assert builder.info.splits["train"].num_examples == 2
  assert builder_base.read_summary(builder.data_dir)["skipped_bad_examples"] == {
      "malformed_csv_row": 1}


def test_bad_label_value(raw, tmp_path):
  import gzip
  path = os.path.join(raw, "mimic-cxr-jpg", "mimic-cxr-2.0.0-chexpert.csv.gz")
  text = gzip.decompress(open(path, "rb").read()).decode().replace(",1.0,,,0.0,", ",yes,,,0.0,")
  open(path, "wb").write(gzip.compress(text.encode()))
  with pytest.raises(BadInputError, match=r"chexpert\.csv\.gz line 2: column Pleural Effusion"):
    tiny_raw.build(raw, str(tmp_path / "out"), "mimic_cxr")


def test_missing_release_is_named(tmp_path):
  os.makedirs(tmp_path / "empty" / "mimic-cxr-jpg" / "2.0.0")
  with pytest.raises(BadInputError, match="cannot find MIMIC-CXR-JPG"):
    tiny_raw.build(str(tmp_path / "empty"), str(tmp_path / "out"), "mimic_cxr")
