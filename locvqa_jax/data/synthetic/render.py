"""Renderer of the synthetic chest radiograph generator: truth in, MIMIC-CXR-JPG-like image out.

Typical use (one patient, several studies)::

  knobs = RENDER_PRESETS["realistic"]
  anatomy = sample_anatomy(patient_rng, knobs)
  acq = sample_acquisition(study_rng, knobs, "PA", image_size=512)
  out = render(anatomy, acq, findings, devices, study_rng, knobs)
  out.image            # [acq.rows, acq.cols] uint8
  out.region_boxes     # the 36 Chest ImaGenome bbox_names -> (x1, y1, x2, y2) pixels
  out.finding_boxes    # per finding, where it was drawn

Pipeline: ``findings_draw.plan`` (findings that move anatomy) -> ``geometry.build_thorax``
(outlines) -> ``body_draw`` (normal anatomy) -> ``findings_draw.draw`` -> ``devices_draw`` ->
``film.develop`` (exposure, noise, equalisation, markers). Region boxes come from the same
outlines as the drawing.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from locvqa_jax.data.synthetic import devices_draw, film, findings_draw
from locvqa_jax.data.synthetic.acquisition import Acquisition, sample_acquisition
from locvqa_jax.data.synthetic.anatomy import Anatomy, sample_anatomy
from locvqa_jax.data.synthetic.body_draw import draw_anatomy
from locvqa_jax.data.synthetic.canvas import Canvas
from locvqa_jax.data.synthetic.geometry import build_thorax
from locvqa_jax.data.synthetic.knobs import RENDER_PRESETS, RenderKnobs
from locvqa_jax.data.synthetic.lateral import draw_lateral
from locvqa_jax.data.synthetic.regions import REGION_NAMES, region_boxes
from locvqa_jax.data.synthetic.truth import Device, Finding, Rendered

__all__ = [
    "Acquisition", "Anatomy", "REGION_NAMES", "RENDER_PRESETS", "RenderKnobs", "render",
    "sample_acquisition", "sample_anatomy",
]


def render(anatomy: Anatomy, acquisition: Acquisition, findings: Sequence[Finding],
           devices: Sequence[Device], rng: np.random.Generator, knobs: RenderKnobs
           ) -> Rendered:
  """Draws one image of ``anatomy`` under ``acquisition`` with ``findings`` and ``devices``.

  Args:
    anatomy: the patient (``sample_anatomy``).
    acquisition: the study's projection and exposure (``sample_acquisition``).
    findings: what to draw; names from ``truth.DRAWABLE_FINDINGS``.
    devices: support devices; names from ``truth.DRAWABLE_DEVICES``.
    rng: the study's generator; only image noise is drawn from it, so the same rng state gives
      the same image and adding a finding changes nothing but the finding.
    knobs: difficulty and look (``RENDER_PRESETS``).

  Returns:
    ``Rendered`` with image [acquisition.rows, acquisition.cols] uint8, the 36 region boxes
    (empty for LATERAL) and one list of boxes per finding (empty lists for LATERAL).
  """
  plan = findings_draw.plan(findings, anatomy)
  devices_draw.check(devices)
  thorax = build_thorax(anatomy, acquisition, plan.mods)
  canvas = Canvas(acquisition, anatomy, thorax, knobs)
  if acquisition.view == "LATERAL":
    draw_lateral(canvas, findings, devices)
    image = film.develop(canvas.total(), acquisition, rng)
    return Rendered(image=image, region_boxes={}, finding_boxes=[[] for _ in findings])
  draw_anatomy(canvas, plan.fractures, plan.vessel_boost)
  finding_boxes = findings_draw.draw(canvas, findings)
  devices_draw.draw(canvas, devices)
  image = film.develop(canvas.total(), acquisition, rng)
  return Rendered(image=image, region_boxes=region_boxes(thorax, anatomy, acquisition),
                  finding_boxes=finding_boxes)
