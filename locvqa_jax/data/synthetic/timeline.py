"""Per-patient ground truth over time: studies, views, findings and devices.

A patient has 2 to 5 studies. The first study draws a few findings; each follow-up either repeats
the previous findings exactly (an acquisition-only follow-up, whose truth is `nothing has
changed.`) or lets findings resolve, change level by one step, stay, or appear. A finding that
stays is the very same ``Finding`` record, so it is drawn with the same size and density; only
the acquisition differs. Devices are fixed per patient so that they never count as a change.

Everything here is sampled from one ``numpy.random.Generator``; ids come from the caller so that
they are unique across patients generated in different processes.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Literal, Optional, Sequence

import numpy as np

from locvqa_jax.data.synthetic import presets
from locvqa_jax.data.synthetic.truth import DRAWABLE_DEVICES, DRAWABLE_FINDINGS, Device, Finding

ReportForm = Literal["full", "impression", "findings", "neither"]


@dataclasses.dataclass(frozen=True)
class FindingSpec:
  """How one finding may occur: allowed sides, zones, levels (ordered by size) and types."""

  sides: tuple[Optional[str], ...]
  zones: tuple[Optional[str], ...]
  levels: tuple[str, ...] = ()
  types: tuple[str, ...] = ()
  p_level: float = 0.0
  p_type: float = 0.0
  weight: float = 1.0


_LR = ("left", "right")
_LRB = ("left", "right", "bilateral")
_ZONES = ("upper", "mid", "lower")

FINDING_SPECS: dict[str, FindingSpec] = {
    "pleural effusion": FindingSpec(_LRB, ("base",), ("small", "moderate", "moderate to large"),
                                    ("layering",), 0.85, 0.3, 3.0),
    "atelectasis": FindingSpec(_LRB, ("lower", "base"), ("minimal", "mild"),
                               ("linear", "plate-like", "compressive", "patchy"), 0.5, 0.6, 3.0),
    "lung opacity": FindingSpec(_LR, _ZONES, ("mild", "moderate"),
                                ("patchy", "ground-glass", "focal", "multifocal"), 0.4, 0.6, 2.5),
    "consolidation": FindingSpec(_LR, _ZONES, (), ("dense", "focal", "patchy"), 0.0, 0.5, 1.5),
    "pneumonia": FindingSpec(_LR, _ZONES, (), ("focal", "multifocal"), 0.0, 0.3, 1.5),
    "edema": FindingSpec(("bilateral",), (None,), ("mild", "moderate", "severe"),
                         ("interstitial",), 0.9, 0.4, 1.5),
    "vascular congestion": FindingSpec((None,), (None,), ("mild", "moderate"), (), 0.6, 0.0, 1.0),
    "cardiomegaly": FindingSpec((None,), (None,), ("mild", "moderate", "severe"), (), 0.7, 0.0, 2.0),
    "enlargement of the cardiac silhouette": FindingSpec((None,), (None,), ("mild", "moderate"),
                                                         (), 0.5, 0.0, 1.0),
    "pneumothorax": FindingSpec(_LR, ("apical",), ("minimal", "small", "moderate"), (), 0.9, 0.0,
                                1.0),
    "granuloma": FindingSpec(_LR, _ZONES, (), ("calcified",), 0.0, 0.6, 0.7),
    "calcification": FindingSpec(_LR, _ZONES, (), (), 0.0, 0.0, 0.5),
    "fracture": FindingSpec(_LR, _ZONES, (), (), 0.0, 0.0, 0.6),
    "blunting of the costophrenic angle": FindingSpec(_LRB, ("base",), (), (), 0.0, 0.0, 0.8),
}
assert set(FINDING_SPECS) == set(DRAWABLE_FINDINGS), "FINDING_SPECS must cover DRAWABLE_FINDINGS"

# Findings that never coexist in one study (they describe the same structure).
_EXCLUSIVE = (
    {"cardiomegaly", "enlargement of the cardiac silhouette"},
    {"pleural effusion", "blunting of the costophrenic angle"},
    {"pneumonia", "consolidation"},
)

# Findings that come and go; chronic ones (granuloma, calcification, fracture) rarely resolve.
_CHRONIC = ("granuloma", "calcification", "fracture")


@dataclasses.dataclass(frozen=True)
class Study:
  """One imaging study of a patient.

  Attributes:
    index: chronological position within the patient (0 = first).
    study_id: MIMIC-style study id (8 digits starting with 5), unrelated to chronology.
    when: study date and time (years 2100-2200).
    view: frontal view of the study, ``PA`` or ``AP``.
    has_lateral: whether a lateral image was also taken.
    findings: ground-truth findings, in report order.
    devices: support devices present.
    acquisition_only: a follow-up with exactly the previous study's findings.
    report_form: which of FINDINGS/IMPRESSION sections the report has.
    chexpert_empty: the study's CheXpert/NegBio row carries no label at all.
  """

  index: int
  study_id: int
  when: datetime.datetime
  view: str
  has_lateral: bool
  findings: tuple[Finding, ...]
  devices: tuple[Device, ...]
  acquisition_only: bool
  report_form: ReportForm
  chexpert_empty: bool


@dataclasses.dataclass(frozen=True)
class Patient:
  """A patient and their chronologically ordered studies."""

  index: int
  subject_id: int
  gender: str
  age: int
  studies: tuple[Study, ...]

  @property
  def age_decile(self) -> str:
    low = (self.age // 10) * 10
    return f"{low}-{low + 10}"


def _level_centre(spec: FindingSpec, level: str) -> float:
  rank, n = spec.levels.index(level), len(spec.levels)
  return 0.2 + 0.7 * (rank + 0.5) / n


def severity_for(spec: FindingSpec, level: Optional[str], rng: np.random.Generator) -> float:
  """Maps a level to a renderer severity in (0, 1): larger levels are larger and denser."""
  if level is None:
    return float(rng.uniform(0.35, 0.7))
  return float(_level_centre(spec, level) + rng.uniform(-0.05, 0.05))


def with_level(finding: Finding, level: str) -> Finding:
  """The same finding at another level; the offset of its severity from the level's centre is
  kept, so a finding that returns to a level looks as it did at that level before."""
  spec = FINDING_SPECS[finding.name]
  offset = finding.severity - _level_centre(spec, finding.level)
  return dataclasses.replace(finding, level=level, severity=_level_centre(spec, level) + offset)


def _allowed_levels(spec: FindingSpec, knobs: presets.TimelineKnobs) -> tuple[str, ...]:
  if len(spec.levels) > 1:
    return spec.levels[min(knobs.min_level_rank, len(spec.levels) - 1):]
  return spec.levels


def sample_finding(name: str, rng: np.random.Generator, knobs: presets.TimelineKnobs) -> Finding:
  """Draws side, zone, level, type and severity of a new finding called ``name``."""
  spec = FINDING_SPECS[name]
  side = spec.sides[rng.integers(len(spec.sides))]
  zone = spec.zones[rng.integers(len(spec.zones))]
  levels = _allowed_levels(spec, knobs)
  level = levels[rng.integers(len(levels))] if levels and rng.random() < spec.p_level else None
  ftype = spec.types[rng.integers(len(spec.types))] if spec.types and rng.random() < spec.p_type \
      else None
  return Finding(name=name, side=side, zone=zone, level=level, type=ftype,
                 severity=severity_for(spec, level, rng))


def _can_add(name: str, present: Sequence[Finding]) -> bool:
  names = {f.name for f in present}
  if name in names:
    return False
  return not any(name in group and names & (group - {name}) for group in _EXCLUSIVE)


def _new_finding(rng: np.random.Generator, knobs: presets.TimelineKnobs,
                 present: Sequence[Finding], history: dict[str, Finding],
                 excluded: Sequence[Finding] = ()) -> Optional[Finding]:
  """A new finding not in ``present`` nor ``excluded``.

  A name the patient had before comes back where it was (same side, zone and type; only the level
  is drawn again): Diff-VQA compares findings by name, so a recurrence on the other side would be
  an image change that no answer mentions.
  """
  gone = {f.name for f in excluded}
  candidates = [n for n in DRAWABLE_FINDINGS if _can_add(n, present) and n not in gone]
  if not candidates:
    return None
  weights = np.array([FINDING_SPECS[n].weight for n in candidates])
  name = candidates[rng.choice(len(candidates), p=weights / weights.sum())]
  finding = sample_finding(name, rng, knobs)
  if name in history:
    old = history[name]
    same = finding.level is None or old.level is None or finding.level == old.level
    finding = old if same else with_level(old, finding.level)
  history.setdefault(name, finding)
  return finding


def change_level(finding: Finding, rng: np.random.Generator,
                 knobs: presets.TimelineKnobs) -> Optional[Finding]:
  """The finding one level step up or down, or None when its level cannot change."""
  levels = _allowed_levels(FINDING_SPECS[finding.name], knobs)
  if finding.level is None or finding.level not in levels or len(levels) < 2:
    return None
  rank = levels.index(finding.level)
  steps = [s for s in (-1, 1) if 0 <= rank + s < len(levels)]
  return with_level(finding, levels[rank + steps[rng.integers(len(steps))]])


def _follow_up(previous: Sequence[Finding], rng: np.random.Generator,
               knobs: presets.TimelineKnobs, history: dict[str, Finding]) -> tuple[Finding, ...]:
  current = []
  for finding in previous:
    p_resolve = knobs.p_resolve * (0.2 if finding.name in _CHRONIC else 1.0)
    if rng.random() < p_resolve:
      continue
    if rng.random() < knobs.p_level_change:
      changed = change_level(finding, rng, knobs)
      if changed is not None:
        current.append(changed)
        continue
    current.append(finding)
  if len(current) < knobs.max_findings and rng.random() < knobs.p_new_finding:
    new = _new_finding(rng, knobs, current, history, excluded=previous)
    if new is not None:
      current.append(new)
  return tuple(current)


def _report_form(rng: np.random.Generator, knobs: presets.TimelineKnobs) -> ReportForm:
  u = rng.random()
  if u < knobs.p_neither:
    return "neither"
  if u < knobs.p_neither + knobs.p_impression_only:
    return "impression"
  if u < knobs.p_neither + knobs.p_impression_only + knobs.p_findings_only:
    return "findings"
  return "full"


def _devices(rng: np.random.Generator) -> tuple[Device, ...]:
  devices = []
  for name, p in zip(DRAWABLE_DEVICES, (0.5, 0.5, 0.5, 0.2)):
    if rng.random() < p:
      side = None if name in ("endotracheal tube", "enteric tube") else str(rng.choice(["left",
                                                                                     "right"]))
      devices.append(Device(name=name, side=side))
  return tuple(devices)


def sample_patient(rng: np.random.Generator, knobs: presets.TimelineKnobs, index: int,
                   subject_id: int, study_ids: Sequence[int]) -> Patient:
  """Samples one patient's studies.

  Args:
    rng: the patient's own generator (derived from the run seed and ``index``).
    knobs: timeline knobs of the preset.
    index: patient index in the run.
    subject_id: the patient's MIMIC-style subject id.
    study_ids: at least ``knobs.max_studies`` unique study ids reserved for this patient.
  """
  n_studies = int(rng.integers(knobs.min_studies, knobs.max_studies + 1))
  if len(study_ids) < n_studies:
    raise ValueError(f"sample_patient: need {n_studies} study ids, got {len(study_ids)}")
  inpatient = rng.random() < knobs.p_ap_patient
  p_ap = knobs.p_ap_inpatient if inpatient else knobs.p_ap_outpatient
  devices = _devices(rng) if inpatient and rng.random() < knobs.p_devices else ()
  age = int(rng.integers(20, 95))
  gender = "F" if rng.random() < 0.5 else "M"
  start = datetime.datetime(int(rng.integers(2100, 2190)), 1, 1) + datetime.timedelta(
      days=int(rng.integers(0, 365)), seconds=int(rng.integers(0, 86400)),
      milliseconds=int(rng.integers(0, 1000)))

  studies = []
  history: dict[str, Finding] = {}
  findings: tuple[Finding, ...] = ()
  when = start
  for i in range(n_studies):
    acquisition_only = False
    if i == 0:
      found: list[Finding] = []
      for _ in range(min(int(rng.poisson(knobs.mean_initial_findings)), knobs.max_findings)):
        new = _new_finding(rng, knobs, found, history)
        if new is not None:
          found.append(new)
      findings = tuple(found)
    else:
      low, high = knobs.days_between_studies
      when = datetime.datetime(when.year, when.month, when.day) + datetime.timedelta(
          days=int(rng.integers(low, high + 1)), seconds=int(rng.integers(0, 86400)),
          milliseconds=int(rng.integers(0, 1000)))
      if rng.random() < knobs.p_acquisition_only:
        acquisition_only = True
      else:
        findings = _follow_up(findings, rng, knobs, history)
        acquisition_only = findings == studies[-1].findings
    view = "AP" if rng.random() < p_ap else "PA"
    p_lateral = knobs.p_lateral_ap if view == "AP" else knobs.p_lateral_pa
    form = _report_form(rng, knobs)
    studies.append(Study(
        index=i, study_id=int(study_ids[i]), when=when, view=view,
        has_lateral=bool(rng.random() < p_lateral), findings=findings, devices=devices,
        acquisition_only=acquisition_only, report_form=form,
        chexpert_empty=form == "neither" or bool(rng.random() < knobs.p_no_chexpert)))
  return Patient(index=index, subject_id=int(subject_id), gender=gender, age=age,
                 studies=tuple(studies))
