"""Difficulty presets of the synthetic generator: every knob in one place.

A preset pairs the timeline knobs (how often findings appear, resolve or change, how many studies a
patient has, how often a follow-up differs only by acquisition, how reports are sectioned) with the
name of the renderer's knob set (``render.RENDER_PRESETS``: finding contrast, acquisition jitter,
noise). To make the data harder or easier, edit or copy a preset here; nothing else needs to change.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class TimelineKnobs:
  """What happens to a patient over time (probabilities are per patient, study or finding).

  Attributes:
    min_studies, max_studies: studies per patient, uniform in [min, max].
    p_ap_patient: probability that a patient is an inpatient, imaged mostly AP (portable).
    p_ap_inpatient, p_ap_outpatient: probability of an AP study for each kind of patient.
    p_lateral_pa, p_lateral_ap: probability that a study also has a lateral image.
    mean_initial_findings: Poisson mean of the number of findings on the first study.
    max_findings: cap on simultaneous findings in one study.
    p_acquisition_only: probability that a follow-up repeats the previous findings exactly, so it
      differs only by acquisition (truth `nothing has changed.`).
    p_resolve: per finding and changing follow-up, probability that it resolves.
    p_level_change: per finding with a level, probability that the level moves one step.
    p_new_finding: per changing follow-up, probability of one new finding.
    min_level_rank: levels below this rank of a finding's level list are not used (0 keeps the
      subtle ones such as `minimal`; 1 drops the smallest level of each finding).
    p_devices: probability that an inpatient has support devices (kept for all their studies).
    p_impression_only, p_findings_only, p_neither: report section layouts (the rest has both).
    p_no_chexpert: extra probability that a study's CheXpert/NegBio row is all empty (reports
      with neither section always get an empty row, as in MIMIC-CXR-JPG).
    mimic_val_fraction, mimic_test_fraction: MIMIC-CXR-JPG split fractions by patient.
    imagenome_val_fraction, imagenome_test_fraction: Chest ImaGenome split fractions by patient
      (an independent assignment, as in the real data).
    gold_fraction: fraction of patients listed in `images_to_avoid.csv` (at least one).
    days_between_studies: (low, high) days between consecutive studies.
    p_ap_view_question: probability that an AP main image gets a view question.
  """

  min_studies: int = 2
  max_studies: int = 5
  p_ap_patient: float = 0.4
  p_ap_inpatient: float = 0.85
  p_ap_outpatient: float = 0.1
  p_lateral_pa: float = 0.85
  p_lateral_ap: float = 0.1
  mean_initial_findings: float = 1.2
  max_findings: int = 4
  p_acquisition_only: float = 0.25
  p_resolve: float = 0.3
  p_level_change: float = 0.35
  p_new_finding: float = 0.5
  min_level_rank: int = 0
  p_devices: float = 0.5
  p_impression_only: float = 0.06
  p_findings_only: float = 0.1
  p_neither: float = 0.05
  p_no_chexpert: float = 0.01
  mimic_val_fraction: float = 0.1
  mimic_test_fraction: float = 0.1
  imagenome_val_fraction: float = 0.1
  imagenome_test_fraction: float = 0.2
  gold_fraction: float = 0.02
  days_between_studies: tuple[int, int] = (1, 400)
  p_ap_view_question: float = 0.05

  def __post_init__(self):
    if not 1 <= self.min_studies <= self.max_studies:
      raise ValueError(
          f"TimelineKnobs: need 1 <= min_studies <= max_studies, got {self.min_studies}, "
          f"{self.max_studies}")
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if field.name.startswith("p_") and not 0.0 <= value <= 1.0:
        raise ValueError(f"TimelineKnobs.{field.name} must be in [0, 1], got {value}")
    if self.p_impression_only + self.p_findings_only + self.p_neither > 1.0:
      raise ValueError("TimelineKnobs: report layout probabilities sum to more than 1")


@dataclasses.dataclass(frozen=True)
class Preset:
  """A named difficulty: timeline knobs plus the renderer's preset name."""

  name: str
  timeline: TimelineKnobs
  render_preset: str

  def render_knobs(self) -> Any:
    """The renderer's ``RenderKnobs`` of this preset (imported lazily: rendering is optional)."""
    from locvqa_jax.data.synthetic import render  # pylint: disable=g-import-not-at-top
    try:
      return render.RENDER_PRESETS[self.render_preset]
    except KeyError:
      raise KeyError(
          f"Preset {self.name!r}: render preset {self.render_preset!r} not in "
          f"render.RENDER_PRESETS ({sorted(render.RENDER_PRESETS)})") from None


PRESETS: dict[str, Preset] = {
    # Quick start on CPU: fewer simultaneous findings, no subtle levels, clear contrast.
    "easy": Preset(
        name="easy",
        timeline=TimelineKnobs(mean_initial_findings=1.0, max_findings=3, min_level_rank=1,
                               p_acquisition_only=0.2),
        render_preset="easy"),
    # Looks like a radiograph: subtle low levels, more findings, real-sized acquisition changes.
    "realistic": Preset(
        name="realistic",
        timeline=TimelineKnobs(),
        render_preset="realistic"),
}


def get_preset(name: str) -> Preset:
  """Looks a preset up by name, naming the valid ones on error."""
  try:
    return PRESETS[name]
  except KeyError:
    raise KeyError(f"Unknown synthetic preset {name!r}; expected one of {sorted(PRESETS)}") from None
