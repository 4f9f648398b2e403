"""`chest_imagenome` round trips (folder, nested folder, zip), box handling and bad inputs."""

import json
import os

import numpy as np
import pytest

import tiny_raw
from tfds_builders.common import builder_base
from tfds_builders.common.issues import BadInputError


def _by_dicom(builder, split):
  return {ex["dicom_id"].decode(): ex for ex in tiny_raw.read_all(builder, split)}


@pytest.mark.parametrize("layout", ["flat", "nested", "release"])
def test_round_trip(layout, tmp_path):
  raw = tiny_raw.write(str(tmp_path / "raw"), layout)
  builder = tiny_raw.build(raw, str(tmp_path / "out"), "chest_imagenome")
  assert {k: v.num_examples for k, v in builder.info.splits.items()} == {
      "train": 2, "validation": 1, "test": 1}
  train = _by_dicom(builder, "train")
  assert set(train) == {tiny_raw.A, tiny_raw.C}  # B: no scene graph; E: images_to_avoid
  a = train[tiny_raw.A]
  assert a["image"].shape == (128, 128, 1)
  assert a["view_position"] == b"PA" and a["study_id"] == b"50000001"
  names = [n.decode() for n in a["objects"]["bbox_name"]]
  assert names == ["right lung", "left lung", "spine"]  # trachea empty after clipping
  boxes = np.asarray(a["objects"]["bbox"])
  # Portrait 60x50, right lung (5, 10, 25, 50) in pixels -> exact frame coordinates.
  np.testing.assert_allclose(boxes[0], [10 / 60, 1 / 6, 50 / 60, 0.5], atol=1e-6)
  assert boxes[1][3] == 1.0  # left lung clipped at the right edge
  # spine has no original_* keys: from the 224 canvas (rounded there).
  np.testing.assert_allclose(boxes[2], [0, 23 / 60 + 1 / 12, 1, 27 / 60 + 1 / 12], atol=0.01)
  phrases = a["phrases"]
  assert [t.decode() for t in phrases["text"]] == [
      "Small right pleural effusion.", "The lungs are clear.", "Small right pleural effusion.",
      "spine"]
  assert [n.decode() for n in phrases["bbox_name"]] == [
      "right lung", "right lung", "left lung", "spine"]
  assert phrases["attributes"][0] == b"anatomicalfinding|yes|pleural effusion;nlp|yes|abnormal"
  assert phrases["attributes"][3] == b""
  np.testing.assert_allclose(phrases["bbox"][2], boxes[1])
  assert a["report"].decode() == tiny_raw.REPORTS[tiny_raw.S1]
  summary = builder_base.read_summary(builder.data_dir)
  quirks = summary["quirks_handled"]
  assert quirks["split images without a scene graph (skipped)"] == 1
  assert quirks["split images in images_to_avoid (excluded)"] == 1
  assert quirks["boxes empty after clipping (dropped)"] == 4
  assert quirks["split paths .dcm -> .jpg"] == 4
  assert summary["counts"]["scene_graph_layout"] == {
      "flat": "folder", "nested": "nested folder", "release": "zip"}[layout]


def _graph_path(raw, dicom):
  return os.path.join(raw, "chest-imagenome", "silver_dataset", "scene_graph",
                      f"{dicom}_SceneGraph.json")


def test_unparseable_json(tmp_path):
  raw = tiny_raw.write(str(tmp_path / "raw"))
  with open(_graph_path(raw, tiny_raw.C), "w") as f:
    f.write("{not json")
  with pytest.raises(BadInputError, match=rf"{tiny_raw.C}_SceneGraph\.json: cannot parse"):
    tiny_raw.build(raw, str(tmp_path / "out"), "chest_imagenome")
  builder = tiny_raw.build(raw, str(tmp_path / "out"), "chest_imagenome", skip_bad_examples=True)
  assert builder.info.splits["train"].num_examples == 1
  assert builder_base.read_summary(builder.data_dir)["skipped_bad_examples"] == {
      "bad_scene_graph": 1}


def test_missing_required_key(tmp_path):
  raw = tiny_raw.write(str(tmp_path / "raw"))
  graph = tiny_raw.scene_graph(tiny_raw.D)
  del graph["objects"][1]["x2"]
  with open(_graph_path(raw, tiny_raw.D), "w") as f:
    json.dump(graph, f)
  with pytest.raises(BadInputError, match=r"objects\[1\]: missing required key 'x2'"):
    tiny_raw.build(raw, str(tmp_path / "out"), "chest_imagenome")


def test_missing_optional_keys_are_fine(tmp_path):
  raw = tiny_raw.write(str(tmp_path / "raw"))
  graph = tiny_raw.scene_graph(tiny_raw.D)
  for key in ("viewpoint", "relationships", "image_id", "patient_id"):
    del graph[key]
  del graph["attributes"][0]["attributes"]
  with open(_graph_path(raw, tiny_raw.D), "w") as f:
    json.dump(graph, f)
  builder = tiny_raw.build(raw, str(tmp_path / "out"), "chest_imagenome")
  ex = tiny_raw.read_all(builder, "validation")[0]
  assert ex["phrases"]["attributes"][0] == b"" and ex["view_position"] == b"PA"


def _rewrite_jpg(raw, dicom, height, width):
  subject, study = tiny_raw.IMAGES[dicom][:2]
  path = os.path.join(raw, "mimic-cxr-jpg", "files", f"p{subject[:2]}", f"p{subject}",
                      f"s{study}", f"{dicom}.jpg")
  with open(path, "wb") as f:
    f.write(tiny_raw._jpg(height, width))  # pylint: disable=protected-access
  return path


def test_resized_jpgs_keep_exact_boxes(tmp_path):
  raw = tiny_raw.write(str(tmp_path / "raw"))
  _rewrite_jpg(raw, tiny_raw.A, 120, 100)  # metadata says 60 x 50
  builder = tiny_raw.build(raw, str(tmp_path / "out"), "chest_imagenome")
  boxes = np.asarray(_by_dicom(builder, "train")[tiny_raw.A]["objects"]["bbox"])
  np.testing.assert_allclose(boxes[0], [10 / 60, 1 / 6, 50 / 60, 0.5], atol=1e-6)
  quirks = builder_base.read_summary(builder.data_dir)["quirks_handled"]
  assert quirks["JPGs resized from the metadata's Rows x Columns (boxes still exact)"] == 1


def test_jpg_shape_disagreeing_with_metadata(tmp_path):
  raw = tiny_raw.write(str(tmp_path / "raw"))
  path = _rewrite_jpg(raw, tiny_raw.A, 50, 50)
  with pytest.raises(BadInputError, match=rf"{path}: image is 50x50 but metadata Rows x Columns "
                     "is 60x50"):
    tiny_raw.build(raw, str(tmp_path / "out"), "chest_imagenome")


def test_missing_report_is_empty_unreadable_report_fails(tmp_path):
  raw = tiny_raw.write(str(tmp_path / "raw"))
  reports = os.path.join(raw, "mimic-cxr-reports", "files", "p10", "p10000001")
  os.remove(os.path.join(reports, "s50000001.txt"))
  builder = tiny_raw.build(raw, str(tmp_path / "out"), "chest_imagenome")
  assert _by_dicom(builder, "train")[tiny_raw.A]["report"] == b""
  assert builder_base.read_summary(builder.data_dir)["quirks_handled"][
      "images whose report was not found (report = '')"] == 1
  with open(os.path.join(reports, "s50000002.txt"), "wb") as f:
    f.write(b"\xff\xfe\xfa not utf-8")
  with pytest.raises(BadInputError, match=r"s50000002\.txt: cannot read report"):
    tiny_raw.build(raw, str(tmp_path / "out2"), "chest_imagenome")
