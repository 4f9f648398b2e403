"""Chest ImaGenome scene graphs (``<dicom_id>_SceneGraph.json``) from the truth and the renderer.

Objects are the renderer's region boxes, written in original pixels and on the 224 canvas
(``x224 = x * ratio + left``, ``ratio = 224 / max(H, W)``, centred padding). Attributes attach
each report sentence to the regions it describes (a finding's regions follow from its side and
zone); relationships compare each finding's regions with the previous exam.

``synsets`` and ``attributes_ids`` hold placeholder codes (``X`` + 7 digits), not UMLS CUIs: the
project reads region and attribute names, never the codes.
"""

from __future__ import annotations

from typing import Optional, Sequence

from locvqa_jax.data.synthetic import reports, timeline, vqa
from locvqa_jax.data.synthetic.truth import Box, Finding

CANVAS = 224

OBJECT_NAMES = {
    "right lung": "Right lung", "right upper lung zone": "Right upper lung zone",
    "right mid lung zone": "Right mid lung zone", "right lower lung zone": "Right lower lung zone",
    "right hilar structures": "Hilar Area of the Right Lung",
    "right apical zone": "Apical zone of right lung",
    "right costophrenic angle": "right costophrenic sulcus;;Right costodiaphragmatic recess",
    "right cardiophrenic angle": "right cardiophrenic sulcus",
    "right hemidiaphragm": "Right hemidiaphragm", "left lung": "Left lung",
    "left upper lung zone": "Left upper lung zone", "left mid lung zone": "Left mid lung zone",
    "left lower lung zone": "Left lower lung zone",
    "left hilar structures": "Hilar Area of the Left Lung",
    "left apical zone": "Apical zone of left lung",
    "left costophrenic angle": "left costophrenic sulcus;;Left costodiaphragmatic recess",
    "left hemidiaphragm": "Left hemidiaphragm", "trachea": "Trachea", "spine": "Spine",
    "right clavicle": "Right clavicle", "left clavicle": "Left clavicle",
    "aortic arch": "Aortic arch structure", "mediastinum": "Mediastinum",
    "upper mediastinum": "Upper mediastinum", "svc": "Superior vena cava structure",
    "cardiac silhouette": "Cardiac shadow viewed radiologically;;Heart",
    "left cardiac silhouette": "Left border of heart viewed radiologically",
    "right cardiac silhouette": "Right border of heart viewed radiologically",
    "cavoatrial junction": "Cavoatrial junction", "right atrium": "Right atrial structure",
    "descending aorta": "Descending aorta", "carina": "Structure of carina",
    "left upper abdomen": "Left upper quadrant of abdomen",
    "right upper abdomen": "Right upper quadrant of abdomen", "abdomen": "Abdominal cavity",
    "left cardiophrenic angle": "left cardiophrenic sulcus",
}
BBOX_NAMES = tuple(OBJECT_NAMES)

FINDING_LABELS = {
    "pleural effusion": ("anatomicalfinding", "pleural effusion"),
    "atelectasis": ("anatomicalfinding", "atelectasis"),
    "lung opacity": ("anatomicalfinding", "lung opacity"),
    "consolidation": ("anatomicalfinding", "consolidation"),
    "pneumonia": ("disease", "pneumonia"),
    "edema": ("anatomicalfinding", "pulmonary edema/hazy opacity"),
    "vascular congestion": ("anatomicalfinding", "vascular congestion"),
    "cardiomegaly": ("anatomicalfinding", "enlarged cardiac silhouette"),
    "enlargement of the cardiac silhouette": ("anatomicalfinding", "enlarged cardiac silhouette"),
    "pneumothorax": ("anatomicalfinding", "pneumothorax"),
    "granuloma": ("disease", "granulomatous disease"),
    "calcification": ("anatomicalfinding", "calcified nodule"),
    "fracture": ("anatomicalfinding", "rib fracture"),
    "blunting of the costophrenic angle": ("anatomicalfinding", "costophrenic angle blunting"),
}
DEVICE_LABELS = {
    "endotracheal tube": ("tubesandlines", "endotracheal tube", ("trachea",)),
    "enteric tube": ("tubesandlines", "enteric tube", ("abdomen",)),
    "central line": ("tubesandlines", "ij line", ("svc",)),
    "pacemaker": ("device", "cardiac pacer and wires", ("cardiac silhouette",)),
}
_NEGATION_REGIONS = {"pleural effusion": ("left costophrenic angle", "right costophrenic angle")}
_COMPARISON = {"new": "worsened", "increased": "worsened", "decreased": "improved",
               "resolved": "improved", "unchanged": "no change"}
_TEXTURE = {"interstitial": "interstitial", "calcified": "calcified"}
_OPACITIES = ("lung opacity", "consolidation", "pneumonia", "edema")


def _code(text: str) -> str:
  """A stable placeholder concept code for a region or attribute name."""
  value = 0
  for ch in text:
    value = (value * 131 + ord(ch)) % 10_000_000
  return f"X{value:07d}"


def to_canvas224(box: Box, rows: int, cols: int) -> tuple[int, int, int, int]:
  """Original-pixel box -> integer box on the 224 canvas (longest side 224, centred padding)."""
  ratio = CANVAS / max(rows, cols)
  left, top = (CANVAS - cols * ratio) / 2, (CANVAS - rows * ratio) / 2
  x1, y1, x2, y2 = box
  return (round(x1 * ratio + left), round(y1 * ratio + top), round(x2 * ratio + left),
          round(y2 * ratio + top))


def finding_regions(f: Finding) -> list[str]:
  """Chest ImaGenome regions a finding lies in, from its side and zone."""
  if f.name in ("cardiomegaly", "enlargement of the cardiac silhouette"):
    return ["cardiac silhouette"]
  if f.name == "vascular congestion":
    return ["right hilar structures", "left hilar structures"]
  if f.side is None:
    return ["right lung", "left lung"]
  sides = ("right", "left") if f.side == "bilateral" else (f.side,)
  out = []
  for s in sides:
    if f.name == "pleural effusion":
      out += [f"{s} costophrenic angle", f"{s} lower lung zone"]
    elif f.name == "blunting of the costophrenic angle":
      out += [f"{s} costophrenic angle"]
    elif f.zone == "apical":
      out += [f"{s} apical zone"]
    elif f.zone == "base":
      out += [f"{s} lower lung zone", f"{s} costophrenic angle"]
    elif f.zone in ("upper", "mid", "lower"):
      out += [f"{s} {f.zone} lung zone", f"{s} lung"]
    else:
      out += [f"{s} lung"]
  return out


def _sentence_regions(s: reports.Sentence) -> list[str]:
  if s.finding is not None:
    return finding_regions(s.finding)
  if s.device is not None:
    return list(DEVICE_LABELS[s.device.name][2])
  if s.negated:
    return list(_NEGATION_REGIONS.get(s.negated[0], ("right lung", "left lung")))
  if s.normal == "lungs":
    return ["right lung", "left lung"]
  if s.normal == "heart":
    return ["cardiac silhouette"]
  return []


def _sentence_attributes(s: reports.Sentence) -> list[str]:
  """The sentence's `category|relation|label` strings, ending with its nlp normal/abnormal."""
  if s.finding is not None:
    category, label = FINDING_LABELS[s.finding.name]
    if s.change == "resolved":
      return [f"{category}|no|{label}", "nlp|yes|normal"]
    return [f"{category}|yes|{label}", "nlp|yes|abnormal"]
  if s.device is not None:
    category, label, _ = DEVICE_LABELS[s.device.name]
    return [f"{category}|yes|{label}", "nlp|yes|normal"]
  if s.negated:
    category, label = FINDING_LABELS[s.negated[0]]
    return [f"{category}|no|{label}", "nlp|yes|normal"]
  if s.normal == "heart":
    return ["anatomicalfinding|no|enlarged cardiac silhouette", "nlp|yes|normal"]
  return ["nlp|yes|normal"]


def _cues(s: reports.Sentence) -> dict[str, list[str]]:
  f = s.finding
  cues = {"comparison_cues": [], "temporal_cues": [], "severity_cues": [], "texture_cues": []}
  if s.change in _COMPARISON and f is not None:
    cues["comparison_cues"].append(f"comparison|yes|{_COMPARISON[s.change]}")
  if f is not None and f.level and s.change != "resolved":
    cues["severity_cues"].append(f"severity|yes|{f.level}")
  if f is not None and f.type in _TEXTURE:
    cues["texture_cues"].append(f"texture|yes|{_TEXTURE[f.type]}")
  elif f is not None and f.name in _OPACITIES:
    cues["texture_cues"].append("texture|yes|opacity")
  return cues


def _objects(dicom_id: str, region_boxes: dict[str, Box], rows: int, cols: int) -> list[dict]:
  objects = []
  for name in BBOX_NAMES:
    if name not in region_boxes:
      continue
    # The 224 box comes from the rounded original one, so the two agree to half a canvas pixel.
    ox1, oy1, ox2, oy2 = (round(v) for v in region_boxes[name])
    x1, y1, x2, y2 = to_canvas224((ox1, oy1, ox2, oy2), rows, cols)
    objects.append({
        "object_id": f"{dicom_id}_{name}", "x1": x1, "y1": y1, "x2": x2, "y2": y2,
        "width": x2 - x1, "height": y2 - y1, "bbox_name": name, "synsets": [_code(name)],
        "name": OBJECT_NAMES[name], "original_x1": ox1, "original_y1": oy1, "original_x2": ox2,
        "original_y2": oy2, "original_width": ox2 - ox1, "original_height": oy2 - oy1})
  return objects


def _attributes(dicom_id: str, study_id: int, report: reports.Report,
                regions: Sequence[str]) -> list[dict]:
  by_region: dict[str, dict] = {}
  for idx, s in enumerate(report.sentences):
    attrs = _sentence_attributes(s)
    cues = _cues(s)
    for region in _sentence_regions(s):
      if region not in regions:
        continue
      entry = by_region.setdefault(region, {
          region: True, "bbox_name": region, "synsets": [_code(region)],
          "name": OBJECT_NAMES[region], "attributes": [], "attributes_ids": [], "phrases": [],
          "phrase_IDs": [], "sections": [], "comparison_cues": [], "temporal_cues": [],
          "severity_cues": [], "texture_cues": [], "object_id": f"{dicom_id}_{region}"})
      entry["attributes"].append(list(attrs))
      entry["attributes_ids"].append([_code(a) for a in attrs])
      entry["phrases"].append(s.text)
      entry["phrase_IDs"].append(f"{study_id}|{idx}")
      entry["sections"].append("finalreport")
      for key, values in cues.items():
        entry[key].append(list(values))
  return [by_region[r] for r in BBOX_NAMES if r in by_region]


def _relationships(dicom_id: str, previous_dicom: str, previous: timeline.Study,
                   study: timeline.Study, report: reports.Report,
                   regions: Sequence[str]) -> list[dict]:
  before = {vqa.canonical_name(f.name): f for f in previous.findings}
  now = {vqa.canonical_name(f.name): f for f in study.findings}
  phrases: dict[str, str] = {}
  for s in report.sentences:
    if s.finding is not None:
      phrases.setdefault(vqa.canonical_name(s.finding.name), s.text)
  out = []
  for name in list(now) + [n for n in before if n not in now]:
    f = now.get(name) or before[name]
    if name not in before:
      status = "worsened"
    elif name not in now:
      status = "improved"
    elif f.level and before[name].level and f.level != before[name].level:
      levels = timeline.FINDING_SPECS[f.name].levels
      status = "worsened" if levels.index(f.level) > levels.index(before[name].level) \
          else "improved"
    else:
      status = "no change"
    category, label = FINDING_LABELS[f.name]
    for region in finding_regions(f):
      if region not in regions:
        continue
      rel = {"relationship_id": f"{dicom_id}_{previous_dicom}_{len(out)}",
             "subject_id": f"{dicom_id}_{region}", "object_id": f"{previous_dicom}_{region}",
             "bbox_name": region, "relationship_names": [f"comparison|yes|{status}"],
             "attributes": [f"{category}|yes|{label}"]}
      if name in phrases:
        rel["phrase"] = phrases[name]
      out.append(rel)
  return out


def build_scene_graph(*, dicom_id: str, patient: timeline.Patient, study: timeline.Study,
                      report: reports.Report, region_boxes: dict[str, Box], rows: int,
                      cols: int, previous: Optional[tuple[str, timeline.Study]]) -> dict:
  """The scene-graph JSON object of one frontal image.

  Args:
    dicom_id: the frontal image's id.
    patient, study: ground truth; ``report`` the study's generated report.
    region_boxes: renderer boxes (original pixels) of the Chest ImaGenome regions.
    rows, cols: the image's shape.
    previous: (frontal dicom id, study) of the patient's previous exam, or None.
  """
  regions = [r for r in BBOX_NAMES if r in region_boxes]
  graph = {
      "image_id": dicom_id, "viewpoint": study.view, "patient_id": patient.subject_id,
      "study_id": study.study_id, "gender": patient.gender, "age_decile": patient.age_decile,
      "reason_for_exam": report.indication,
      "objects": _objects(dicom_id, region_boxes, rows, cols),
      "attributes": _attributes(dicom_id, study.study_id, report, regions),
      "relationships": [],
      "StudyDateTime": study.when.strftime("%Y-%m-%d %H:%M:%S"),
      "StudyOrder": study.index + 1}
  if previous is not None:
    graph["relationships"] = _relationships(dicom_id, previous[0], previous[1], study, report,
                                            regions)
  return graph
