"""End-to-end tests of the synthetic generator's command line with a tiny stand-in renderer.

The generated files are read back with csv/gzip/json only (no generator code) and checked
against DATA_FORMATS.md: column orders, id formats, StudyTime floats, Rows/Columns vs the JPGs,
report layout, scene-graph keys and the 224-canvas formula, question templates, answer vocabulary
and the split fractions.
"""

import csv
import dataclasses
import gzip
import hashlib
import io
import json
import math
import os
import re
import subprocess
import sys
import types

import numpy as np
import pytest
from PIL import Image

from locvqa_jax.data import synthetic
from locvqa_jax.data.synthetic import __main__ as cli
from locvqa_jax.data.synthetic.truth import Rendered

BBOX_NAMES = (
    "right lung, right upper lung zone, right mid lung zone, right lower lung zone, "
    "right hilar structures, right apical zone, right costophrenic angle, "
    "right cardiophrenic angle, right hemidiaphragm, left lung, left upper lung zone, "
    "left mid lung zone, left lower lung zone, left hilar structures, left apical zone, "
    "left costophrenic angle, left hemidiaphragm, trachea, spine, right clavicle, left clavicle, "
    "aortic arch, mediastinum, upper mediastinum, svc, cardiac silhouette, "
    "left cardiac silhouette, right cardiac silhouette, cavoatrial junction, right atrium, "
    "descending aorta, carina, left upper abdomen, right upper abdomen, abdomen, "
    "left cardiophrenic angle").split(", ")


# ---------------------------------------------------------------------------- stand-in renderer
@dataclasses.dataclass(frozen=True)
class _Knobs:
  contrast: float


@dataclasses.dataclass(frozen=True)
class _Acquisition:
  rows: int
  cols: int
  view: str
  shift: float


def _sample_anatomy(rng, knobs):
  return {"lung_width": float(rng.uniform(0.3, 0.4)), "contrast": knobs.contrast}


def _sample_acquisition(rng, knobs, view, image_size):
  del knobs
  cols = image_size - int(rng.integers(0, image_size // 6))
  return _Acquisition(rows=image_size, cols=cols, view=view, shift=float(rng.uniform(-3, 3)))


def _render(anatomy, acquisition, findings, devices, rng, knobs):
  del devices, knobs
  rows, cols = acquisition.rows, acquisition.cols
  image = rng.integers(0, 40, size=(rows, cols)).astype(np.uint8)
  boxes = {}
  if acquisition.view != "LATERAL":
    for k, name in enumerate(BBOX_NAMES):
      x = (k % 6) * cols / 6 + acquisition.shift
      y = (k // 6) * rows / 6
      # One box sticks out of the image, as real ones can.
      boxes[name] = (x - (5 if k == 0 else 0), y, x + cols / 6 * anatomy["lung_width"] * 2,
                     y + rows / 6)
  finding_boxes = []
  for f in findings:
    side = "left" if f.side in ("left", None) else "right"
    box = boxes.get(f"{side} lung")
    if box is not None:
      x1, y1, x2, y2 = (int(v) for v in box)
      image[max(y1, 0):y2, max(x1, 0):x2] = min(255, 100 + int(155 * f.severity))
    finding_boxes.append([box] if box is not None else [])
  return Rendered(image=image, region_boxes=boxes, finding_boxes=finding_boxes)


def _draw_preview(items, path, columns=4):
  del columns
  with open(path, "wb") as f:
    f.write(f"{len(items)} items".encode())


@pytest.fixture(autouse=True)
def stand_in_renderer(monkeypatch):
  render = types.ModuleType("locvqa_jax.data.synthetic.render")
  render.RenderKnobs = _Knobs
  render.RENDER_PRESETS = {"easy": _Knobs(1.0), "realistic": _Knobs(0.5)}
  render.sample_anatomy = _sample_anatomy
  render.sample_acquisition = _sample_acquisition
  render.render = _render
  preview = types.ModuleType("locvqa_jax.data.synthetic.preview")
  preview.draw_preview = _draw_preview
  for name, module in (("render", render), ("preview", preview)):
    monkeypatch.setitem(sys.modules, f"locvqa_jax.data.synthetic.{name}", module)
    monkeypatch.setattr(synthetic, name, module, raising=False)


def _generate(out, *extra, patients=6, seed=3, size=128):
  argv = ["--out", str(out), "--patients", str(patients), "--seed", str(seed),
          "--image-size", str(size), *extra]
  assert cli.main(argv) == 0
  return out
