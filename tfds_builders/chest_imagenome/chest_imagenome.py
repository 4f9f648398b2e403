"""TFDS builder `chest_imagenome`: one record per frontal image with a silver scene graph.

Boxes come from the original-pixel coordinates (with the metadata Rows x Columns, so resized JPG
copies still map exactly) when a scene graph object has them, else from the 224 canvas; both land
in the same letterboxed frame. Boxes are clipped to the frame; a box empty after clipping is
dropped with its phrases (counted).

`phrases/attributes` is one Text per phrase: its raw attribute strings joined by `;`
(e.g. `anatomicalfinding|yes|pleural effusion;nlp|yes|abnormal`, '' for none).
"""

from __future__ import annotations

import dataclasses
import io
import os
from typing import Any, Optional

import tensorflow_datasets as tfds

from locvqa_jax.data import letterbox
from tfds_builders.common import builder_base
from tfds_builders.common import images
from tfds_builders.common import layout
from tfds_builders.common import mimic_tables
from tfds_builders.common import tables
from tfds_builders.common.issues import BadInputError, BuildSummary
from tfds_builders.common import scene_graphs
from tfds_builders.common.scene_graphs import RawObject, RawPhrase
from tfds_builders.mimic_cxr.mimic_cxr import MISSING_REPORT, load_report

# TFDS cannot serialise a sequence inside a sequence without TensorFlow, so a phrase's
# `category|relation|label` strings are stored joined by this separator (never inside a label).
ATTRIBUTE_SEPARATOR = ";"
SPLIT_FILES = (("train", "train"), ("valid", "validation"), ("test", "test"))
_SPLIT_COLUMNS = ("subject_id", "study_id", "dicom_id")


@dataclasses.dataclass(frozen=True)
class Item:
  dicom_id: str
  subject_id: str
  study_id: str
  view_position: str
  image_path: str
  report_path: Optional[str]
  graph: scene_graphs.GraphLocation
  original_size: tuple[int, int]  # metadata (Rows, Columns); (0, 0) when unknown


@dataclasses.dataclass(frozen=True)
class Loaded:
  image: images.LoadedImage
  report: str
  objects: list[RawObject]
  phrases: list[RawPhrase]
  view_position: str
  graph_error: str
  report_error: str = ""


def load(item: Item, size: int, image_format: str) -> Loaded:
  """Worker side: the scene graph, the report and the letterboxed image of one item."""
  text, report_error = load_report(item.report_path) if item.report_path else (None, "")
  image = images.load_letterboxed(item.image_path, size, image_format)
  try:
    graph = scene_graphs.load_graph(item.graph)
    name = item.graph.name()
    objects = scene_graphs.read_objects(graph, name)
    phrases = scene_graphs.read_phrases(graph, name)
    image_id = str(graph.get("image_id", item.dicom_id)).removesuffix(".dcm")
    if image_id != item.dicom_id:
      raise BadInputError(f"{name}: key 'image_id' is {image_id!r}, expected {item.dicom_id}")
  except BadInputError as e:
    return Loaded(image, "", [], [], "", str(e))
  view = item.view_position or str(graph.get("viewpoint") or "")
  return Loaded(image, text or "", objects, phrases, view, "", report_error)


def frame_box(obj: RawObject, height: int, width: int) -> tuple[float, float, float, float]:
  """The object's (ymin, xmin, ymax, xmax) in the letterboxed frame, unclipped.

  height, width: the size the original-pixel coordinates refer to (the DICOM's Rows, Columns).
  """
  if obj.box_original is not None:
    return letterbox.original_to_frame(obj.box_original, height, width)
  return letterbox.canvas224_to_frame(obj.box_224)


def make_example(item: Item, loaded: Loaded, summary: BuildSummary):
  if loaded.graph_error:
    summary.bad("bad_scene_graph", loaded.graph_error)
    return None
  if loaded.image.error:
    summary.bad("unreadable_image", f"{item.image_path}: {loaded.image.error}")
    return None
  if loaded.report_error == MISSING_REPORT:
    summary.quirk("images whose report was not found (report = '')")
  elif loaded.report_error:
    summary.bad("unreadable_report", f"{item.report_path}: {loaded.report_error}")
    return None
  height, width = item.original_size
  if not (height and width):
    height, width = loaded.image.height, loaded.image.width
  elif abs(height * loaded.image.width - width * loaded.image.height) > max(height, width):
    # A resized copy keeps the aspect ratio, and boxes still map; a different shape would not.
    summary.bad("image_size_mismatch", f"{item.image_path}: image is {loaded.image.height}x"
                f"{loaded.image.width} but metadata Rows x Columns is {height}x{width}")
    return None
  elif (height, width) != (loaded.image.height, loaded.image.width):
    summary.quirk("JPGs resized from the metadata's Rows x Columns (boxes still exact)")
  boxes = {}
  for obj in loaded.objects:
    raw = frame_box(obj, height, width)
    clipped = letterbox.clip_box(raw)
    if clipped is None:
      summary.quirk("boxes empty after clipping (dropped)")
      continue
    if clipped != tuple(raw):
      summary.quirk("boxes partly outside the frame (clipped)")
    boxes.setdefault(obj.bbox_name, clipped)
  objects = [{"bbox_name": name, "bbox": tfds.features.BBox(*box)} for name, box in boxes.items()]
  phrases, phrased = [], set()
  for p in loaded.phrases:
    if p.bbox_name not in boxes:
      summary.quirk("phrases on regions without a box (skipped)")
      continue
    phrased.add(p.bbox_name)
    phrases.append({"text": p.text, "bbox_name": p.bbox_name,
                    "bbox": tfds.features.BBox(*boxes[p.bbox_name]),
                    "attributes": ATTRIBUTE_SEPARATOR.join(p.attributes)})
  for name, box in boxes.items():
    if name not in phrased:
      phrases.append({"text": name, "bbox_name": name, "bbox": tfds.features.BBox(*box),
                      "attributes": ""})
  return item.dicom_id, {
      "image": io.BytesIO(loaded.image.data),
      "dicom_id": item.dicom_id, "study_id": item.study_id, "subject_id": item.subject_id,
      "view_position": loaded.view_position,
      "objects": objects, "phrases": phrases, "report": loaded.report,
  }


def read_split_file(path: str, summary: BuildSummary) -> list[tuple[tables.Row, str, str, str]]:
  """(row, dicom_id, subject_id, study_id) of a Chest ImaGenome split file."""
  out = []
  for row in tables.read_table(path, _SPLIT_COLUMNS, summary, optional=("path", "ViewPosition")):
    dicom = mimic_tables.parse_dicom_id(row["dicom_id"], row, "dicom_id", summary)
    subject = mimic_tables.parse_id(row["subject_id"], "p", row, "subject_id", summary)
    study = mimic_tables.parse_id(row["study_id"], "s", row, "study_id", summary)
    if None not in (dicom, subject, study):
      out.append((row, dicom, subject, study))
  return out


def read_splits(root: str, summary: BuildSummary) -> dict[str, list[tuple[tables.Row, str, str,
                                                                          str]]]:
  """TFDS split -> rows of the Chest ImaGenome split files, images_to_avoid removed."""
  splits_dir = os.path.join(root, "silver_dataset", "splits")
  avoid_path = tables.find_table(splits_dir, "images_to_avoid", required=False)
  avoid = set()
  if avoid_path:
    avoid = {d for _, d, _, _ in read_split_file(avoid_path, summary)}
  else:
    summary.quirk("images_to_avoid.csv missing (nothing excluded)")
  out = {}
  for stem, split in SPLIT_FILES:
    rows = read_split_file(tables.find_table(splits_dir, stem), summary)
    kept = [r for r in rows if r[1] not in avoid]
    summary.quirk("split images in images_to_avoid (excluded)", len(rows) - len(kept))
    out[split] = kept
  return out


def jpg_relative_path(row: tables.Row, summary: BuildSummary) -> Optional[str]:
  """The split file's `path` with `.dcm` -> `.jpg`, or None when the column is absent/empty."""
  path = row.get("path", "").strip()
  if not path:
    return None
  if path.endswith(".dcm"):
    summary.quirk("split paths .dcm -> .jpg")
    path = path[:-4] + ".jpg"
  return path


class ChestImagenome(builder_base.CxrBuilder):
  """Chest ImaGenome: anatomical boxes and box-linked report phrases per frontal image."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = open(
      os.path.join(os.path.dirname(__file__), "MANUAL_DOWNLOAD_INSTRUCTIONS")).read()
  load_fn = load
  make_example_fn = make_example

  def _info(self) -> tfds.core.DatasetInfo:
    text = tfds.features.Text()
    return tfds.core.DatasetInfo(
        builder=self,
        description="Chest ImaGenome silver scene graphs: anatomical region boxes and the "
        "report phrases linked to them, boxes in the letterboxed frame.",
        features=tfds.features.FeaturesDict({
            "image": self.image_feature(),
            "dicom_id": text, "study_id": text, "subject_id": text, "view_position": text,
            "objects": tfds.features.Sequence({
                "bbox_name": text, "bbox": tfds.features.BBoxFeature()}),
            "phrases": tfds.features.Sequence({
                "text": text, "bbox_name": text, "bbox": tfds.features.BBoxFeature(),
                "attributes": text}),
            "report": text,
        }),
        homepage="https://physionet.org/content/chest-imagenome/",
    )

  def _plan(self, manual_dir: str) -> dict[str, list[Any]]:
    summary = self.summary
    jpg_root = layout.mimic_cxr_jpg_root(manual_dir)
    reports_dir = layout.reports_root(manual_dir, required=False)
    if reports_dir is None:
      summary.quirk("no MIMIC-CXR reports under manual_dir (report = '')")
    metadata = mimic_tables.read_metadata(jpg_root, summary)
    root = layout.chest_imagenome_root(manual_dir)
    store = scene_graphs.SceneGraphStore(os.path.join(root, "silver_dataset"))
    summary.counts["scene_graph_layout"] = store.layout
    summary.counts["scene_graphs_found"] = len(store)
    plan: dict[str, list[Item]] = {}
    for split, rows in read_splits(root, summary).items():
      plan[split] = []
      for row, dicom, subject, study in rows:
        if dicom not in store:
          summary.quirk("split images without a scene graph (skipped)")
          continue
        view = row.get("ViewPosition", "").strip()
        relative = jpg_relative_path(row, summary)
        image_path = (os.path.join(jpg_root, relative) if relative else
                      layout.image_path(jpg_root, subject, study, dicom))
        report_path = (layout.report_path(reports_dir, subject, study) if reports_dir else None)
        meta = metadata.get(dicom)
        if meta is None:
          summary.quirk("images missing from the MIMIC metadata table (size from the JPG)")
        size = (meta.rows, meta.columns) if meta else (0, 0)
        plan[split].append(Item(dicom, subject, study, view, image_path, report_path,
                                store.locate(dicom), size))
    return plan
