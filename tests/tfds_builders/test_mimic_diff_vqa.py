"""`mimic_diff_vqa` round trip: pairs, raw answers, row indices, leakage counts, bad inputs."""

import os

import pytest

import tiny_raw
from tfds_builders.common import builder_base
from tfds_builders.common.issues import BadInputError


@pytest.mark.parametrize("layout", ["flat", "release"])
def test_round_trip(layout, tmp_path):
  raw = tiny_raw.write(str(tmp_path / "raw"), layout)
  builder = tiny_raw.build(raw, str(tmp_path / "out"), "mimic_diff_vqa")
  assert {k: v.num_examples for k, v in builder.info.splits.items()} == {
      "train": 1, "validation": 1, "test": 1}
  train = tiny_raw.read_all(builder, "train")[0]
  assert train["study_id"] == b"50000002" and train["ref_id"] == b"50000001"
  assert train["main_dicom_id"].decode() == tiny_raw.C
  assert train["ref_dicom_id"].decode() == tiny_raw.A
  assert train["main_image"].shape == (128, 128, 1) and train["ref_image"].shape == (128, 128, 1)
  q = train["questions"]
  assert list(q["row_index"]) == [0, 1, 2]
  assert q["answer"][0] == b"pleural effusion, atelectasis"  # quoted comma
  assert q["answer"][2].endswith(b"reference image. ")  # trailing space kept
  assert [t.decode() for t in q["question_type"]] == ["abnormality", "view", "difference"]
  test = tiny_raw.read_all(builder, "test")[0]
  assert list(test["questions"]["row_index"]) == [3, 4]
  assert test["questions"]["answer"][1] == b"nothing has changed."
  counts = builder_base.read_summary(builder.data_dir)["counts"]
  assert counts["questions"] == 6 and counts["pairs"] == 3
  assert counts["leakage: validation studies in the mimic_cxr train split"] == 2
  assert counts["leakage: validation studies in the chest_imagenome train split"] == 2
  assert counts["leakage: test studies in the mimic_cxr train split"] == 0


def test_study_missing_from_mimic_all(tmp_path):
  raw = tiny_raw.write(str(tmp_path / "raw"))
  path = os.path.join(raw, "medical-diff-vqa", "mimic_pair_questions.csv")
  text = open(path, newline="").read()
  lines = text.split("\r\n")
  lines[4] = lines[4].replace(tiny_raw.S5, "59999999", 1)
  open(path, "w", newline="").write("\r\n".join(lines))
  with pytest.raises(BadInputError, match=r"mimic_pair_questions\.csv line 5: study 59999999"):
    tiny_raw.build(raw, str(tmp_path / "out"), "mimic_diff_vqa")
  builder = tiny_raw.build(raw, str(tmp_path / "out"), "mimic_diff_vqa", skip_bad_examples=True)
  assert builder_base.read_summary(builder.data_dir)["skipped_bad_examples"] == {
      "study_not_in_mimic_all": 1}
  assert list(tiny_raw.read_all(builder, "test")[0]["questions"]["row_index"]) == [4]


def test_missing_image(tmp_path):
  raw = tiny_raw.write(str(tmp_path / "raw"))
  os.remove(os.path.join(raw, "mimic-cxr-jpg", "files", "p12", "p12000003", "s50000004",
                         tiny_raw.E + ".jpg"))
  with pytest.raises(BadInputError, match=rf"{tiny_raw.E}\.jpg: image file does not exist"):
    tiny_raw.build(raw, str(tmp_path / "out"), "mimic_diff_vqa")
