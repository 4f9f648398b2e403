"""True boxes of Diff-VQA findings from the built `chest_imagenome` scene graphs.

A finding named in a difference answer is true on an image in the Chest ImaGenome regions whose
phrases carry one of its attribute labels with relation `yes` (`category|yes|label`, the
`attributes` of a phrase entry, CONTRACTS A). Diff-VQA names (disease_lib.csv, 30 findings) and
Chest ImaGenome labels (DATA_FORMATS.md 2.5) are different vocabularies; `FINDING_LABELS` maps
one to the other. Findings with no Chest ImaGenome counterpart (hypoxemia, hematoma, ...) never
have a true box and are counted as `no_truth` by the grounding metric.

The truth of an image is looked up by its dicom_id, else by its study (the regions of all the
study's scene graphs). The mean box of each finding (the image-blind baseline) is the mean of
its true region boxes over the train split. Nothing here depends on how the data was made, so
real Chest ImaGenome data gives the real truth.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from locvqa_jax.evaluation.records import PredictionsFormatError

DATASET = "chest_imagenome"
SPLITS = ("train", "validation", "test")

# Diff-VQA finding name -> Chest ImaGenome attribute labels that make it true in a region.
FINDING_LABELS: dict[str, tuple[str, ...]] = {
    "pleural effusion": ("pleural effusion",),
    "atelectasis": ("atelectasis", "linear/patchy atelectasis", "lobar/segmental collapse"),
    "cardiomegaly": ("enlarged cardiac silhouette",),
    "enlargement of the cardiac silhouette": ("enlarged cardiac silhouette",),
    "edema": ("pulmonary edema/hazy opacity",),
    "hernia": ("hernia",),
    "vascular congestion": ("vascular congestion",),
    "hilar congestion": ("vascular congestion", "enlarged hilum"),
    "pneumothorax": ("pneumothorax", "hydropneumothorax"),
    "heart failure": ("fluid overload/heart failure",),
    "lung opacity": ("lung opacity", "airspace opacity"),
    "pneumonia": ("pneumonia",),
    "tortuosity of the descending aorta": ("tortuous aorta",),
    "scoliosis": ("scoliosis",),
    "tortuosity of the thoracic aorta": ("tortuous aorta",),
    "emphysema": ("copd/emphysema",),
    "granuloma": ("granulomatous disease",),
    "calcification": ("calcified nodule", "vascular calcification"),
    "pleural thickening": ("pleural/parenchymal scarring",),
    "blunting of the costophrenic angle": ("costophrenic angle blunting",),
    "consolidation": ("consolidation",),
    "fracture": ("rib fracture", "clavicle fracture", "spinal fracture"),
    "pneumomediastinum": ("pneumomediastinum",),
}

Regions = list[tuple[str, np.ndarray]]  # (bbox_name, box [4]) of one finding on one image


def _str(value: Any) -> str:
  return value.decode("utf-8") if isinstance(value, (bytes, np.bytes_)) else str(value)


def positive_labels(attributes: Any) -> set[str]:
  """Labels with relation `yes` of one phrase: a `;`-joined Text or a list of strings."""
  if isinstance(attributes, (bytes, np.bytes_, str)):
    attributes = _str(attributes).split(";")
  out = set()
  for a in attributes:
    parts = _str(a).strip().split("|")
    if len(parts) == 3 and parts[1] == "yes":
      out.add(parts[2])
  return out


def image_truth(record: Mapping[str, Any]) -> dict[str, Regions]:
  """finding -> its true regions on one chest_imagenome record (one box per bbox_name)."""
  from locvqa_jax.data import tasks  # pylint: disable=g-import-not-at-top
  label_to_findings = collections.defaultdict(list)
  for finding, labels in FINDING_LABELS.items():
    for label in labels:
      label_to_findings[label].append(finding)
  phrases = record.get("phrases") or {}
  out: dict[str, dict[str, np.ndarray]] = collections.defaultdict(dict)
  for name, box, attrs in zip(phrases.get("bbox_name", ()), tasks.as_boxes(phrases.get("bbox")),
                              phrases.get("attributes", ())):
    box = tasks.clip_box(box)
    if box is None:
      continue
    for label in positive_labels(attrs):
      for finding in label_to_findings.get(label, ()):
        out[finding].setdefault(_str(name), box)
  return {f: sorted(regions.items()) for f, regions in out.items()}


@dataclasses.dataclass
class TruthIndex:
  """True regions per image and study, and the mean training box of each finding.

  Attributes:
    by_dicom: dicom_id -> finding -> regions.
    by_study: study_id -> finding -> regions of all the study's indexed images.
    mean_boxes: finding -> [4] mean true box over the train split.
    source: where the truth came from (a built dataset folder), for metrics.json.
  """
  by_dicom: dict[str, dict[str, Regions]]
  by_study: dict[str, dict[str, Regions]]
  mean_boxes: dict[str, np.ndarray]
  source: str = ""

  def regions(self, finding: str, *, dicom_id: str = "", study_id: str = "") -> Regions:
    """True regions of a finding on an image (its dicom_id, else its study); [] if none."""
    graph = self.by_dicom.get(dicom_id) if dicom_id else None
    if graph is None:
      graph = self.by_study.get(study_id, {})
    return graph.get(finding, [])


def build_index(splits: Mapping[str, Iterable[Mapping[str, Any]]], *,
                dicom_ids: Optional[set[str]] = None, study_ids: Optional[set[str]] = None,
                source: str = "") -> TruthIndex:
  """A TruthIndex from chest_imagenome records by split (`train` gives the mean boxes).

  Args:
    splits: split name -> records (dicts as read from the built dataset).
    dicom_ids, study_ids: images and studies to keep (None: all); the mean boxes use every
      train record regardless.
  """
  by_dicom, by_study = {}, collections.defaultdict(lambda: collections.defaultdict(list))
  sums, counts = collections.defaultdict(lambda: np.zeros(4)), collections.Counter()
  for split, records in splits.items():
    for record in records:
      dicom, study = _str(record.get("dicom_id", b"")), _str(record.get("study_id", b""))
      wanted = ((dicom_ids is None and study_ids is None) or dicom in (dicom_ids or ())
                or study in (study_ids or ()))
      if split != "train" and not wanted:
        continue
      truth = image_truth(record)
      if split == "train":
        for finding, regions in truth.items():
          for _, box in regions:
            sums[finding] += box
            counts[finding] += 1
      if wanted:
        by_dicom[dicom] = truth
        for finding, regions in truth.items():
          by_study[study][finding].extend(regions)
  means = {f: (sums[f] / counts[f]).astype(np.float32) for f in counts}
  return TruthIndex(by_dicom, {s: dict(g) for s, g in by_study.items()}, means, source)


def built_config(data_dir: str, preferred: str = "") -> str:
  """A built chest_imagenome config under data_dir (`preferred` if built, else the first).

  Boxes are in [0, 1] of the letterboxed frame, so every resolution gives the same truth.
  """
  from locvqa_jax.data import tasks  # pylint: disable=g-import-not-at-top
  root = os.path.join(data_dir, DATASET)
  configs = sorted(os.listdir(root)) if os.path.isdir(root) else []
  for config in ([preferred] if preferred in configs else []) + configs:
    try:
      tasks.built_dir(data_dir, DATASET, config)
      return config
    except FileNotFoundError:
      continue
  raise FileNotFoundError(f"grounding truth: no built {DATASET} under data_dir={data_dir!r} "
                          f"(looked in {root}); build it with "
                          f"`python -m tfds_builders.build {DATASET} --config=r128`")


def open_index(data_dir: str, *, preferred_config: str = "",
               dicom_ids: Optional[set[str]] = None, study_ids: Optional[set[str]] = None,
               progress: bool = False) -> TruthIndex:
  """build_index over every split of the built chest_imagenome in data_dir (images not read)."""
  from locvqa_jax.data import tasks  # pylint: disable=g-import-not-at-top
  config = built_config(data_dir, preferred_config)
  splits = {}
  for split in SPLITS:
    try:
      splits[split] = _records(tasks.open_split(data_dir, DATASET, config, split,
                                                decode_images=False), split, progress)
    except KeyError:
      continue
  return build_index(splits, dicom_ids=dicom_ids, study_ids=study_ids,
                     source=tasks.built_dir(data_dir, DATASET, config))


def _records(source: Sequence[Mapping[str, Any]], split: str,
             progress: bool) -> Iterable[Mapping[str, Any]]:
  """Every record of a source; the progress bar starts when reading does."""
  from locvqa_jax.data import tasks  # pylint: disable=g-import-not-at-top
  records = tasks.iter_records(source)
  if progress:
    import tqdm  # pylint: disable=g-import-not-at-top
    records = tqdm.tqdm(records, total=len(source), desc=f"truth boxes ({split})", unit="image")
  yield from records


def image_ids(record: Mapping[str, Any], entry: Mapping[str, Any]) -> tuple[str, str]:
  """(dicom_id, study_id) of the image a grounding entry was drawn on."""
  image = entry.get("image", "main")
  study_key = {"main": "study_id", "reference": "ref_id"}.get(image)
  if study_key is None:
    raise PredictionsFormatError(f"record {record.get('id')!r}: grounding 'image' must be "
                                 f"'main' or 'reference', got {image!r}")
  dicom, study = str(entry.get("dicom_id") or ""), str(record.get(study_key) or "")
  if not dicom and not study:
    raise PredictionsFormatError(
        f"record {record.get('id')!r}: a grounding entry without 'dicom_id' needs the record's "
        f"{study_key!r} to look up its true boxes")
  return dicom, study


def attach_truth(records: Sequence[dict[str, Any]], index: TruthIndex) -> list[dict[str, Any]]:
  """Records with `truth`, `truth_regions` and `mean_box` added to each grounding entry.

  Entries that already carry `truth` are kept as they are.
  """
  out = []
  for record in records:
    if "grounding" not in record:
      out.append(record)
      continue
    entries = []
    for e in record["grounding"]:
      if "truth" not in e:
        dicom, study = image_ids(record, e)
        regions = index.regions(e["finding"], dicom_id=dicom, study_id=study)
        mean = index.mean_boxes.get(e["finding"])
        e = dict(e, truth=[b.tolist() for _, b in regions],
                 truth_regions=[n for n, _ in regions],
                 mean_box=None if mean is None else mean.tolist())
      entries.append(e)
    out.append(dict(record, grounding=entries))
  return out


def wanted_ids(records: Sequence[Mapping[str, Any]]) -> tuple[set[str], set[str]]:
  """(dicom_ids, study_ids) of every grounding entry's image, for `open_index`."""
  dicoms, studies = set(), set()
  for record in records:
    for e in record.get("grounding") or ():
      if "truth" not in e:
        dicom, study = image_ids(record, e)
        dicoms.add(dicom)
        studies.add(study)
  return dicoms - {""}, studies - {""}
