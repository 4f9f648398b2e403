"""Chest ImaGenome scene graphs: finding the JSONs (folder, nested folder or zip) and reading
the objects and phrases the builders need.

Required keys (a file lacking one is damage): `objects[*].bbox_name` and the 224-canvas box
`x1, y1, x2, y2`; `attributes[*].bbox_name`. Optional (read with defaults): `image_id`,
`viewpoint`, `attributes[*].phrases`, `attributes[*].attributes`, `original_*` boxes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import zipfile
from typing import Any, Optional

from tfds_builders.common.issues import BadInputError

_NAME = re.compile(r"(?:^|/)([^/]+)_SceneGraph\.json$")
_BOX_KEYS = ("x1", "y1", "x2", "y2")
_ORIGINAL_KEYS = ("original_x1", "original_y1", "original_x2", "original_y2")


class SceneGraphStore:
  """Maps dicom_id -> scene graph JSON in `silver_dataset/scene_graph/` (possibly nested in a
  second `scene_graph/`) or `silver_dataset/scene_graph.zip`."""

  def __init__(self, silver_dir: str):
    self._files: dict[str, str] = {}
    self._zip_path: Optional[str] = None
    self.layout = ""
    folder = os.path.join(silver_dir, "scene_graph")
    zip_path = os.path.join(silver_dir, "scene_graph.zip")
    if os.path.isdir(folder):
      self.layout = "folder"
      for root, _, names in os.walk(folder):
        for name in names:
          m = _NAME.search(name)
          if m:
            self._files[m.group(1)] = os.path.join(root, name)
            if os.path.basename(root) == "scene_graph" and root != folder:
              self.layout = "nested folder"
    if not self._files and os.path.isfile(zip_path):
      self.layout = "zip"
      self._zip_path = zip_path
      try:
        with zipfile.ZipFile(zip_path) as zf:
          for name in zf.namelist():
            m = _NAME.search(name)
            if m:
              self._files[m.group(1)] = name
      except (OSError, zipfile.BadZipFile) as e:
        raise BadInputError(f"{zip_path}: cannot read zip: {e}") from e
    if not self._files:
      raise BadInputError(f"no <dicom_id>_SceneGraph.json files in {folder} or {zip_path}")

  def __contains__(self, dicom_id: str) -> bool:
    return dicom_id in self._files

  def __len__(self) -> int:
    return len(self._files)

  def locate(self, dicom_id: str) -> "GraphLocation":
    """Where one scene graph is; cheap to pickle into worker processes."""
    return GraphLocation(self._zip_path, self._files[dicom_id])


@dataclasses.dataclass(frozen=True)
class GraphLocation:
  zip_path: Optional[str]  # None for an extracted file
  member: str  # the file path, or the member name inside the zip

  def name(self) -> str:
    """The file name used in messages."""
    return f"{self.zip_path}:{self.member}" if self.zip_path else self.member


# Open zips per process (a ZipFile must not be shared across fork()).
_ZIPS: dict[tuple[int, str], zipfile.ZipFile] = {}


def load_graph(location: GraphLocation) -> dict[str, Any]:
  """Parses one scene graph; raises BadInputError naming the file on damage."""
  try:
    if location.zip_path:
      key = (os.getpid(), location.zip_path)
      if key not in _ZIPS:
        _ZIPS[key] = zipfile.ZipFile(location.zip_path)
      raw = _ZIPS[key].read(location.member)
    else:
      with open(location.member, "rb") as f:
        raw = f.read()
    graph = json.loads(raw.decode("utf-8-sig"))
  except (OSError, KeyError, zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise BadInputError(f"{location.name()}: cannot parse scene graph: {e}") from e
  if not isinstance(graph, dict):
    raise BadInputError(f"{location.name()}: expected a JSON object at the top level")
  return graph


@dataclasses.dataclass
class RawObject:
  bbox_name: str
  box_224: tuple[float, float, float, float]  # x1, y1, x2, y2 on the 224 canvas
  box_original: Optional[tuple[float, float, float, float]]  # x1, y1, x2, y2 in pixels


@dataclasses.dataclass
class RawPhrase:
  text: str
  bbox_name: str
  attributes: list[str]


def _require(d: Any, key: str, where: str) -> Any:
  if not isinstance(d, dict) or key not in d:
    raise BadInputError(f"{where}: missing required key '{key}'")
  return d[key]


def _number(value: Any, where: str) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    try:
      return float(value)
    except (TypeError, ValueError):
      raise BadInputError(f"{where}: expected a number, got {value!r}") from None
  return float(value)


def read_objects(graph: dict[str, Any], name: str) -> list[RawObject]:
  """The graph's boxed anatomical objects."""
  objects = _require(graph, "objects", name)
  if not isinstance(objects, list):
    raise BadInputError(f"{name}: key 'objects' must be a list")
  out = []
  for i, obj in enumerate(objects):
    where = f"{name}: objects[{i}]"
    bbox_name = str(_require(obj, "bbox_name", where))
    box = tuple(_number(_require(obj, k, where), f"{where}.{k}") for k in _BOX_KEYS)
    original = None
    if all(obj.get(k) is not None for k in _ORIGINAL_KEYS):
      original = tuple(_number(obj[k], f"{where}.{k}") for k in _ORIGINAL_KEYS)
    out.append(RawObject(bbox_name, box, original))
  return out


def read_phrases(graph: dict[str, Any], name: str) -> list[RawPhrase]:
  """One RawPhrase per (phrase, region) of the graph's `attributes`, in file order.

  Phrase text is whitespace-normalised; a region mentioned without any phrase gives none here
  (the builder adds the region-name phrase for boxed regions without phrases).
  """
  attributes = graph.get("attributes", [])
  if not isinstance(attributes, list):
    raise BadInputError(f"{name}: key 'attributes' must be a list")
  out, seen = [], set()
  for i, region in enumerate(attributes):
    where = f"{name}: attributes[{i}]"
    bbox_name = str(_require(region, "bbox_name", where))
    phrases = region.get("phrases") or []
    labels = region.get("attributes") or []
    if not isinstance(phrases, list) or not isinstance(labels, list):
      raise BadInputError(f"{where}: 'phrases' and 'attributes' must be lists")
    for j, phrase in enumerate(phrases):
      text = " ".join(str(phrase).split())
      if not text or (text, bbox_name) in seen:
        continue
      seen.add((text, bbox_name))
      phrase_labels = labels[j] if j < len(labels) and isinstance(labels[j], list) else []
      out.append(RawPhrase(text, bbox_name, [str(a) for a in phrase_labels]))
  return out
