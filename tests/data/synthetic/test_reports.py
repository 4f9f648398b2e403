"""Report text: MIMIC layout, sections, wrapping, vocabulary, comparison words and labels."""

import datetime
import re

import numpy as np

from locvqa_jax.data.synthetic import presets, reports, timeline
from locvqa_jax.data.synthetic.truth import Device, Finding

EFFUSION = Finding("pleural effusion", "left", "base", "small", "layering", 0.3)
EFFUSION_BIG = Finding("pleural effusion", "left", "base", "moderate", "layering", 0.55)
OPACITY = Finding("lung opacity", "right", "lower", None, "patchy", 0.5)
PNEUMOTHORAX = Finding("pneumothorax", "right", "apical", "small", None, 0.4)


def _study(i, findings, form="full", view="PA", acquisition_only=False, devices=()):
  return timeline.Study(index=i, study_id=50000000 + i, when=datetime.datetime(2150, 1, 1 + i),
                        view=view, has_lateral=view == "PA", findings=tuple(findings),
                        devices=tuple(devices), acquisition_only=acquisition_only,
                        report_form=form, chexpert_empty=form == "neither")


def _patient(*studies):
  return timeline.Patient(index=0, subject_id=10000001, gender="F", age=71, studies=studies)


def _sections(text):
  """Splits a report with the official section regex (newline, space, header, colon)."""
  parts = re.split(r"\n ([A-Z ()/,-]+):\s", text)
  return {parts[i]: " ".join(parts[i + 1].split()) for i in range(1, len(parts) - 1, 2)}


def _write(patient, i, seed=0):
  return reports.write_report(patient, patient.studies[i], np.random.default_rng(seed))


def test_layout_lines_and_sections():
  patient = _patient(_study(0, [EFFUSION, OPACITY]))
  report = _write(patient, 0)
  lines = report.text.rstrip("\n").split("\n")
  assert lines[0] == "                                 FINAL REPORT"
  assert all(line.startswith(" ") and len(line) <= 79 for line in lines)
  sections = _sections(report.text)
  assert list(sections) == ["EXAMINATION", "INDICATION", "TECHNIQUE", "COMPARISON", "FINDINGS",
                            "IMPRESSION"]
  assert sections["EXAMINATION"] == "CHEST (PA AND LAT)"
  assert sections["INDICATION"].startswith("___ year old woman with")
  assert sections["COMPARISON"] == "None."
  assert "small layering left pleural effusion" in sections["FINDINGS"].lower()
  assert "patchy right lower lung opacity" in sections["FINDINGS"].lower()
  assert "No pneumothorax." in sections["FINDINGS"]
  assert "No pleural effusion." not in sections["FINDINGS"]
  assert "Small layering left pleural effusion." in sections["IMPRESSION"]


def test_every_sentence_appears_in_the_text():
  patient = _patient(_study(0, [EFFUSION]), _study(1, [EFFUSION_BIG, PNEUMOTHORAX],
                                                   devices=[Device("pacemaker", "left")]))
  report = _write(patient, 1)
  flat = " ".join(report.text.split())
  assert all(s.text in flat for s in report.sentences)
  assert any(s.device is not None and "Left chest wall pacemaker" in s.text
             for s in report.sentences)


def test_follow_up_comparison_words():
  patient = _patient(_study(0, [EFFUSION, OPACITY]), _study(1, [EFFUSION_BIG, PNEUMOTHORAX]),
                     _study(2, [EFFUSION_BIG, PNEUMOTHORAX], acquisition_only=True))
  findings = _sections(_write(patient, 1).text)["FINDINGS"]
  assert "The layering left pleural effusion has increased and is now moderate." in findings
  assert "There is a new small right apical pneumothorax." in findings
  assert "The previously seen patchy right lower lung opacity has resolved." in findings
  changes = {s.change for s in _write(patient, 1).sentences}
  assert {"increased", "new", "resolved"} <= changes
  later = _sections(_write(patient, 2).text)
  assert "is unchanged" in later["FINDINGS"] and "No significant interval change." in later[
      "IMPRESSION"]
  assert later["COMPARISON"] == "___"


def test_portable_ap_exam():
  sections = _sections(_write(_patient(_study(0, [], view="AP")), 0).text)
  assert sections["EXAMINATION"] == "CHEST (PORTABLE AP)"
  assert "The lungs are clear." in sections["FINDINGS"]
  assert sections["IMPRESSION"] == "No acute cardiopulmonary process."


def test_impression_only_findings_only_and_neither():
  only_impression = _sections(_write(_patient(_study(0, [EFFUSION], form="impression")), 0).text)
  assert "FINDINGS" not in only_impression and "pleural effusion" in only_impression["IMPRESSION"]
  only_findings = _sections(_write(_patient(_study(0, [EFFUSION], form="findings")), 0).text)
  assert "IMPRESSION" not in only_findings and "pleural effusion" in only_findings["FINDINGS"]
  neither = _write(_patient(_study(0, [EFFUSION], form="neither")), 0)
  assert not {"FINDINGS", "IMPRESSION"} & set(_sections(neither.text))
  last_paragraph = neither.text.strip("\n").split("\n \n")[-1]
  assert "left pleural effusion" in " ".join(last_paragraph.split())
  assert {s.section for s in neither.sentences} == {"body"}


def test_long_reports_wrap_without_breaking_words():
  findings = [Finding(n, s, z, l, t, 0.5) for n, s, z, l, t in [
      ("pleural effusion", "bilateral", "base", "moderate to large", "layering"),
      ("atelectasis", "left", "lower", "mild", "plate-like"),
      ("lung opacity", "right", "upper", "moderate", "ground-glass"),
      ("cardiomegaly", None, None, "severe", None)]]
  report = _write(_patient(_study(0, findings)), 0)
  lines = report.text.split("\n")
  assert max(len(line) for line in lines) <= 79
  flat = " ".join(report.text.split())
  assert "plate-like" in flat and "ground-glass" in flat
  assert "moderate to large layering bilateral pleural effusions" in flat.lower()


def test_chexpert_labels():
  study = _study(0, [EFFUSION, OPACITY], devices=[Device("endotracheal tube")])
  labels = reports.chexpert_labels(study, _write(_patient(study), 0))
  assert labels["Pleural Effusion"] == "1.0" and labels["Lung Opacity"] == "1.0"
  assert labels["Pneumothorax"] == "0.0" and labels["Support Devices"] == "1.0"
  assert labels["No Finding"] == "" and labels["Fracture"] == ""
  normal = _study(0, [])
  labels = reports.chexpert_labels(normal, _write(_patient(normal), 0))
  assert labels["No Finding"] == "1.0" and labels["Cardiomegaly"] == "0.0"
  empty = _study(0, [EFFUSION], form="neither")
  assert set(reports.chexpert_labels(empty, _write(_patient(empty), 0)).values()) == {""}
  assert tuple(labels) == reports.CHEXPERT_COLUMNS


def test_sampled_patients_write_valid_reports():
  knobs = presets.PRESETS["realistic"].timeline
  for i in range(40):
    patient = timeline.sample_patient(np.random.default_rng(i), knobs, i, 10000000 + i,
                                      list(range(50000000, 50000005)))
    for s in patient.studies:
      text = reports.write_report(patient, s, np.random.default_rng(i)).text
      assert all(line.startswith(" ") and len(line) <= 79 for line in text.rstrip("\n").split(
          "\n"))
