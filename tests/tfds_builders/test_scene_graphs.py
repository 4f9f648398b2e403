"""Scene graph reading from a real-style fixture: folder, nested folder and zip stores."""

import os
import shutil
import zipfile

import numpy as np
import pytest

from locvqa_jax.data import letterbox
from tfds_builders.chest_imagenome import chest_imagenome
from tfds_builders.common import scene_graphs
from tfds_builders.common.issues import BadInputError

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "raw",
                        "scene_graph")
DICOM = "0a1b2c3d-4e5f6a7b-8c9d0e1f-2a3b4c5d-6e7f8a9b"
NAME = f"{DICOM}_SceneGraph.json"


def _store(tmp_path, kind):
  silver = tmp_path / "silver_dataset"
  if kind == "zip":
    os.makedirs(silver)
    with zipfile.ZipFile(silver / "scene_graph.zip", "w") as zf:
      zf.write(os.path.join(FIXTURES, NAME), f"scene_graph/{NAME}")
  else:
    folder = silver / "scene_graph" / ("scene_graph" if kind == "nested folder" else "")
    os.makedirs(folder)
    shutil.copy(os.path.join(FIXTURES, NAME), folder / NAME)
  return scene_graphs.SceneGraphStore(str(silver))


@pytest.mark.parametrize("kind", ["folder", "nested folder", "zip"])
def test_store_layouts(tmp_path, kind):
  store = _store(tmp_path, kind)
  assert store.layout == kind and DICOM in store and len(store) == 1
  graph = scene_graphs.load_graph(store.locate(DICOM))
  assert graph["image_id"] == DICOM


def test_objects_and_phrases(tmp_path):
  location = _store(tmp_path, "zip").locate(DICOM)
  graph = scene_graphs.load_graph(location)
  objects = scene_graphs.read_objects(graph, location.name())
  assert [o.bbox_name for o in objects] == ["right lung", "left costophrenic angle", "svc"]
  assert objects[0].box_original == (300, 136, 1209, 2143) and objects[2].box_original is None
  phrases = scene_graphs.read_phrases(graph, location.name())
  assert [(p.text, p.bbox_name) for p in phrases] == [
      ("Small left pleural effusion with blunting of the costophrenic angle.",
       "left costophrenic angle"),
      ("The right lung is clear.", "right lung"), ("No pneumothorax.", "right lung"),
      ("Left chest port in place.", "left chest wall")]
  assert phrases[0].attributes[-1] == "nlp|yes|abnormal"
  # Original pixels when present, else the 224 canvas; the same frame either way.
  np.testing.assert_allclose(chest_imagenome.frame_box(objects[0], 3056, 2544),
                             letterbox.original_to_frame((300, 136, 1209, 2143), 3056, 2544))
  np.testing.assert_allclose(chest_imagenome.frame_box(objects[2], 3056, 2544),
                             (60 / 224, 100 / 224, 90 / 224, 112 / 224))


def test_bad_graphs_name_file_and_key(tmp_path):
  with pytest.raises(BadInputError, match=r"x\.json: objects\[0\]: missing required key 'y1'"):
    scene_graphs.read_objects({"objects": [{"bbox_name": "a", "x1": 1}]}, "x.json")
  with pytest.raises(BadInputError, match=r"x\.json: objects\[0\]\.x2: expected a number"):
    scene_graphs.read_objects(
        {"objects": [{"bbox_name": "a", "x1": 1, "y1": 1, "x2": "?", "y2": 2}]}, "x.json")
  with pytest.raises(BadInputError, match=r"x\.json: missing required key 'objects'"):
    scene_graphs.read_objects({}, "x.json")
  with pytest.raises(BadInputError, match=r"x\.json: attributes\[0\]: missing required key"):
    scene_graphs.read_phrases({"attributes": [{"phrases": ["a"]}]}, "x.json")
  os.makedirs(tmp_path / "silver_dataset")
  with pytest.raises(BadInputError, match="no <dicom_id>_SceneGraph.json files"):
    scene_graphs.SceneGraphStore(str(tmp_path / "silver_dataset"))
