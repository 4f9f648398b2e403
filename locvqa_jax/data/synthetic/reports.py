"""MIMIC-style free-text reports and CheXpert-style labels, written from the ground truth.

A report has the `FINAL REPORT` header, EXAMINATION / INDICATION / TECHNIQUE / COMPARISON and,
depending on the study's ``report_form``, FINDINGS and IMPRESSION sections (some reports have only
an impression, only findings, or neither, as real ones do). Every line starts with a space and is
at most 79 characters; PHI (ages, dates) is `___`. Finding sentences put the Diff-VQA level, type
and location words before the finding name (`small left pleural effusion`), follow-ups use
comparison words (new, increased, decreased, unchanged, resolved), absent findings are negated
explicitly (`No pneumothorax.`). Each sentence keeps what it is about, so the scene graph can
attach it to regions.
"""

from __future__ import annotations

import dataclasses
import textwrap
from typing import Optional

import numpy as np

from locvqa_jax.data.synthetic import timeline, vqa
from locvqa_jax.data.synthetic.truth import Device, Finding

LINE_WIDTH = 79
CHEXPERT_COLUMNS = (
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum",
    "Fracture", "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other",
    "Pneumonia", "Pneumothorax", "Support Devices")

_REPORT_NAME = {"edema": "pulmonary edema", "vascular congestion": "pulmonary vascular congestion"}
_NEGATIONS = (("pneumothorax", "No pneumothorax."),
              ("pleural effusion", "No pleural effusion."),
              ("consolidation", "No focal consolidation."),
              ("edema", "No pulmonary edema."))
_INDICATIONS = ("shortness of breath", "cough and fever", "chest pain", "hypoxia",
                "evaluate for pneumonia", "follow-up of known effusion", "weakness",
                "preoperative evaluation")
_DEVICE_TEXT = {
    "endotracheal tube": "Endotracheal tube terminates about 4 cm above the carina.",
    "enteric tube": "An enteric tube courses below the diaphragm, tip in the stomach.",
    "central line": "{Side} internal jugular central line ends in the mid svc.",
    "pacemaker": "{Side} chest wall pacemaker with leads in the right atrium and ventricle.",
}


@dataclasses.dataclass(frozen=True)
class Sentence:
  """One report sentence and what it states.

  Attributes:
    text: the sentence, single-spaced, as it appears in the report (modulo line wrapping).
    section: ``findings``, ``impression`` or ``body`` (reports with neither section).
    finding: the finding the sentence affirms (or reports resolved, with ``change='resolved'``).
    change: comparison with the previous study: new, increased, decreased, unchanged, resolved.
    negated: official finding names the sentence negates.
    device: the support device it describes.
    normal: ``lungs`` or ``heart`` for a normal statement.
  """

  text: str
  section: str
  finding: Optional[Finding] = None
  change: Optional[str] = None
  negated: tuple[str, ...] = ()
  device: Optional[Device] = None
  normal: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Report:
  """A generated report: full text, its sentences in text order and the indication."""

  text: str
  sentences: tuple[Sentence, ...]
  indication: str

  @property
  def negated(self) -> tuple[str, ...]:
    return tuple(n for s in self.sentences for n in s.negated)


def _location_text(f: Finding) -> Optional[str]:
  words = vqa.location_words(f)
  return " ".join("mid" if w == "middle" else w for w in words) if words else None


def _phrase(f: Finding, with_level: bool = True) -> str:
  name = _REPORT_NAME.get(f.name, f.name)
  if f.side == "bilateral" and f.name == "pleural effusion":
    name = "pleural effusions"
  location = _location_text(f)
  if location and name.startswith("lung ") and location.endswith(" lung"):
    location = location[:-len(" lung")]  # "right lower lung opacity", not "... lung lung ..."
  words = [f.level if with_level else None, f.type, location, name]
  return " ".join(w for w in words if w)


def _change(f: Finding, previous: Optional[tuple[Finding, ...]]) -> Optional[str]:
  if previous is None:
    return None
  before = {vqa.canonical_name(p.name): p for p in previous}.get(vqa.canonical_name(f.name))
  if before is None:
    return "new"
  if f.level and before.level and f.level != before.level:
    levels = timeline.FINDING_SPECS[f.name].levels
    return "increased" if levels.index(f.level) > levels.index(before.level) else "decreased"
  return "unchanged"


def _finding_sentence(f: Finding, change: Optional[str], rng: np.random.Generator) -> str:
  phrase = _phrase(f)
  if change == "new":
    return f"There is a new {phrase}."
  if change in ("increased", "decreased"):
    return f"The {_phrase(f, with_level=False)} has {change} and is now {f.level}."
  if change == "unchanged":
    return f"{phrase[0].upper()}{phrase[1:]} is unchanged."
  options = (f"There is {phrase}.", f"{phrase[0].upper()}{phrase[1:]} is seen.")
  return options[int(rng.integers(len(options)))]


def _impression_sentence(f: Finding, change: Optional[str]) -> str:
  phrase = _phrase(f)
  prefix = {"new": "New", "increased": "Increased", "decreased": "Decreased",
            "unchanged": "Unchanged"}.get(change or "")
  return f"{prefix} {phrase}." if prefix else f"{phrase[0].upper()}{phrase[1:]}."


def _sentences(study: timeline.Study, previous: Optional[timeline.Study],
               rng: np.random.Generator) -> tuple[list[Sentence], list[Sentence]]:
  """Findings-section and impression-section sentences of a study."""
  before = previous.findings if previous is not None else None
  findings, impression = [], []
  for f in study.findings:
    change = _change(f, before)
    findings.append(Sentence(_finding_sentence(f, change, rng), "findings", f, change))
    impression.append(Sentence(_impression_sentence(f, change), "impression", f, change))
  now = {vqa.canonical_name(f.name) for f in study.findings}
  for f in before or ():
    if vqa.canonical_name(f.name) not in now:
      text = f"The previously seen {_phrase(f, with_level=False)} has resolved."
      findings.append(Sentence(text, "findings", f, "resolved"))
      impression.append(Sentence(f"Resolved {_phrase(f, with_level=False)}.", "impression", f,
                                 "resolved"))
  lung_findings = [f for f in study.findings if f.side is not None or f.name == "edema"]
  if not lung_findings:
    findings.append(Sentence("The lungs are clear.", "findings", normal="lungs"))
  for name, text in _NEGATIONS:
    if vqa.can_negate(name, study.findings):
      findings.append(Sentence(text, "findings", negated=(name,)))
  if vqa.can_negate("cardiomegaly", study.findings):
    findings.append(Sentence("Heart size is normal.", "findings", normal="heart"))
  for device in study.devices:
    side = (device.side or "right").capitalize()
    findings.append(Sentence(_DEVICE_TEXT[device.name].format(Side=side), "findings",
                             device=device))
  if not study.findings:
    impression.append(Sentence("No acute cardiopulmonary process.", "impression"))
  if previous is not None and study.acquisition_only:
    impression.append(Sentence("No significant interval change.", "impression",
                               change="unchanged"))
  return findings, impression


def _wrap(paragraph: str) -> list[str]:
  lines = textwrap.wrap(paragraph, width=LINE_WIDTH - 1, break_long_words=False,
                        break_on_hyphens=False)
  return [" " + line for line in lines]


def _section(header: str, body: str, inline: bool) -> list[str]:
  if inline:
    return _wrap(f"{header}:  {body}") + [" "]
  return [f" {header}:", " "] + _wrap(body) + [" "]


def write_report(patient: timeline.Patient, study: timeline.Study,
                 rng: np.random.Generator) -> Report:
  """Writes the report of ``study`` (comparison with the patient's previous study)."""
  previous = patient.studies[study.index - 1] if study.index > 0 else None
  findings, impression = _sentences(study, previous, rng)
  person = "woman" if patient.gender == "F" else "man"
  reason = _INDICATIONS[int(rng.integers(len(_INDICATIONS)))]
  indication = f"___ year old {person} with {reason}."
  if study.view == "AP":
    exam, technique = "CHEST (PORTABLE AP)", "Portable AP chest radiograph."
  elif study.has_lateral:
    exam, technique = "CHEST (PA AND LAT)", "Chest PA and lateral."
  else:
    exam, technique = "CHEST (PA)", "Chest PA."
  lines = ["                                 FINAL REPORT"]
  lines += _section("EXAMINATION", exam, True)
  lines += _section("INDICATION", indication, True)
  lines += _section("TECHNIQUE", technique, True)
  lines += _section("COMPARISON", "___" if previous is not None else "None.", True)

  form = study.report_form
  if form == "impression":
    kept = [dataclasses.replace(s, section="impression")
            for s in impression + [s for s in findings if s.negated]]
    lines += _section("IMPRESSION", " ".join(s.text for s in kept), False)
  elif form == "neither":
    kept = [dataclasses.replace(s, section="body") for s in findings]
    lines += _wrap(" ".join(s.text for s in kept)) + [" "]
  else:
    kept = list(findings)
    lines += _section("FINDINGS", " ".join(s.text for s in findings), False)
    if form == "full":
      kept += impression
      lines += _section("IMPRESSION", " ".join(s.text for s in impression), False)
  while lines[-1] == " ":
    lines.pop()
  return Report(text="\n".join(lines) + "\n", sentences=tuple(kept), indication=indication)


def chexpert_labels(study: timeline.Study, report: Report) -> dict[str, str]:
  """CheXpert-style labels of a study as CSV strings (`1.0`, `0.0`, `-1.0` or `` unmentioned)."""
  labels = {c: "" for c in CHEXPERT_COLUMNS}
  if study.chexpert_empty:
    return labels
  names = {f.name for f in study.findings}
  positive = {
      "Atelectasis": "atelectasis" in names, "Cardiomegaly": "cardiomegaly" in names,
      "Consolidation": "consolidation" in names, "Edema": "edema" in names,
      "Enlarged Cardiomediastinum": "enlargement of the cardiac silhouette" in names,
      "Fracture": "fracture" in names, "Lung Lesion": "granuloma" in names,
      "Lung Opacity": "lung opacity" in names, "Pleural Effusion": "pleural effusion" in names,
      "Pneumonia": "pneumonia" in names, "Pneumothorax": "pneumothorax" in names,
      "Support Devices": bool(study.devices)}
  for column, value in positive.items():
    if value:
      labels[column] = "1.0"
  if "vascular congestion" in names and "edema" not in names:
    labels["Edema"] = "-1.0"
  if "blunting of the costophrenic angle" in names:
    labels["Pleural Effusion"] = "-1.0"
  negated = set(report.negated)
  for column, name in (("Pneumothorax", "pneumothorax"), ("Pleural Effusion", "pleural effusion"),
                       ("Consolidation", "consolidation"), ("Edema", "edema")):
    if name in negated:
      labels[column] = "0.0"
  if any(s.normal == "heart" for s in report.sentences):
    labels["Cardiomegaly"] = "0.0"
  if not study.findings:
    labels["No Finding"] = "1.0"
  return labels
