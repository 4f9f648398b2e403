"""Scene graphs: 224-canvas boxes, finding regions, phrase attachment and comparisons."""

import datetime

import numpy as np
import pytest

from locvqa_jax.data.synthetic import reports, scene_graph, timeline
from locvqa_jax.data.synthetic.truth import Device, Finding

EFFUSION = Finding("pleural effusion", "left", "base", "small", None, 0.3)
EFFUSION_BIG = Finding("pleural effusion", "left", "base", "moderate", None, 0.55)
OPACITY = Finding("lung opacity", "right", "lower", None, "patchy", 0.5)
CARDIOMEGALY = Finding("cardiomegaly", None, None, "mild", None, 0.4)


def _study(i, findings, devices=()):
  return timeline.Study(index=i, study_id=50000010 + i, when=datetime.datetime(2150, 3, 1 + i),
                        view="AP", has_lateral=False, findings=tuple(findings),
                        devices=tuple(devices), acquisition_only=False, report_form="full",
                        chexpert_empty=False)


def _boxes(rows, cols):
  return {name: (10.0 + k, 20.0, 60.4 + k, cols * 0.5) for k, name in
          enumerate(scene_graph.BBOX_NAMES)}


@pytest.mark.parametrize("rows, cols", [(448, 448), (512, 400), (300, 600)])
def test_canvas_formula(rows, cols):
  ratio = 224 / max(rows, cols)
  left, top = (224 - cols * ratio) / 2, (224 - rows * ratio) / 2
  x1, y1, x2, y2 = scene_graph.to_canvas224((0, 0, cols, rows), rows, cols)
  assert (x1, y1, x2, y2) == (round(left), round(top), round(cols * ratio + left),
                              round(rows * ratio + top))
  assert max(x2 - x1, y2 - y1) == 224
  assert scene_graph.to_canvas224((100, 50, 200, 80), rows, cols)[0] == round(100 * ratio + left)


def test_finding_regions_follow_side_and_zone():
  assert scene_graph.finding_regions(Finding("lung opacity", "left", "lower")) == [
      "left lower lung zone", "left lung"]
  assert scene_graph.finding_regions(Finding("pneumothorax", "right", "apical")) == [
      "right apical zone"]
  assert set(scene_graph.finding_regions(Finding("pleural effusion", "bilateral", "base"))) == {
      "right costophrenic angle", "right lower lung zone", "left costophrenic angle",
      "left lower lung zone"}
  assert scene_graph.finding_regions(CARDIOMEGALY) == ["cardiac silhouette"]
  assert all(r in scene_graph.BBOX_NAMES for name in timeline.FINDING_SPECS
             for r in scene_graph.finding_regions(Finding(name, "left", "mid")))
  assert len(scene_graph.BBOX_NAMES) == 36


def _graph(previous_findings, findings, devices=()):
  studies = (_study(0, previous_findings), _study(1, findings, devices))
  patient = timeline.Patient(index=0, subject_id=10000002, gender="M", age=64, studies=studies)
  report = reports.write_report(patient, studies[1], np.random.default_rng(0))
  rows, cols = 512, 400
  return scene_graph.build_scene_graph(
      dicom_id="d" * 44, patient=patient, study=studies[1], report=report,
      region_boxes=_boxes(rows, cols), rows=rows, cols=cols, previous=("p" * 44, studies[0])), report


def test_graph_keys_objects_and_phrases():
  graph, report = _graph([EFFUSION], [EFFUSION_BIG, OPACITY], [Device("endotracheal tube")])
  assert graph["image_id"] == "d" * 44 and graph["viewpoint"] == "AP"
  assert graph["patient_id"] == 10000002 and graph["study_id"] == 50000011
  assert graph["age_decile"] == "60-70" and graph["reason_for_exam"] == report.indication
  obj = graph["objects"][0]
  assert obj["bbox_name"] == "right lung" and obj["original_x1"] == 10
  assert obj["original_x2"] == 60 and obj["x1"] == scene_graph.to_canvas224((10, 20, 60, 200),
                                                                            512, 400)[0]
  by_region = {a["bbox_name"]: a for a in graph["attributes"]}
  left_lower = by_region["left lower lung zone"]
  idx = [int(p.split("|")[1]) for p in left_lower["phrase_IDs"]]
  assert [report.sentences[i].text for i in idx] == left_lower["phrases"]
  assert ["anatomicalfinding|yes|pleural effusion", "nlp|yes|abnormal"] in left_lower["attributes"]
  assert ["comparison|yes|worsened"] in left_lower["comparison_cues"]
  assert ["severity|yes|moderate"] in left_lower["severity_cues"]
  right_lower = by_region["right lower lung zone"]
  assert ["texture|yes|opacity"] in right_lower["texture_cues"]
  assert ["tubesandlines|yes|endotracheal tube", "nlp|yes|normal"] in by_region["trachea"][
      "attributes"]
  negated = [a for a in by_region["right lung"]["attributes"] if "anatomicalfinding|no|pneumothorax"
             in a]
  assert negated and negated[0][-1] == "nlp|yes|normal"


def test_relationships_compare_with_the_previous_exam():
  graph, _ = _graph([EFFUSION_BIG, CARDIOMEGALY], [EFFUSION, OPACITY])
  status = {(r["bbox_name"], r["attributes"][0]): r["relationship_names"][0]
            for r in graph["relationships"]}
  assert status[("left costophrenic angle", "anatomicalfinding|yes|pleural effusion")] == (
      "comparison|yes|improved")
  assert status[("right lower lung zone", "anatomicalfinding|yes|lung opacity")] == (
      "comparison|yes|worsened")
  assert status[("cardiac silhouette", "anatomicalfinding|yes|enlarged cardiac silhouette")] == (
      "comparison|yes|improved")
  rel = graph["relationships"][0]
  assert rel["subject_id"] == f"{'d' * 44}_{rel['bbox_name']}"
  assert rel["object_id"] == f"{'p' * 44}_{rel['bbox_name']}"
  unchanged, _ = _graph([EFFUSION], [EFFUSION])
  assert {r["relationship_names"][0] for r in unchanged["relationships"]} == {
      "comparison|yes|no change"}


def test_regions_missing_from_the_renderer_are_skipped():
  studies = (_study(0, [OPACITY]),)
  patient = timeline.Patient(0, 10000002, "M", 64, studies)
  report = reports.write_report(patient, studies[0], np.random.default_rng(0))
  graph = scene_graph.build_scene_graph(
      dicom_id="e" * 44, patient=patient, study=studies[0], report=report,
      region_boxes={"right lung": (1, 2, 3, 4)}, rows=10, cols=10, previous=None)
  assert [o["bbox_name"] for o in graph["objects"]] == ["right lung"]
  assert {a["bbox_name"] for a in graph["attributes"]} == {"right lung"}
  assert graph["relationships"] == []
