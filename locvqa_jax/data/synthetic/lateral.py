"""A simple lateral chest radiograph of the same patient (anterior to the image's left).

Lateral views carry no Chest ImaGenome regions, so nothing here is boxed; the picture only has to
be a plausible lateral film that agrees with the frontal truth (effusions fill the posterior
sulcus, cardiomegaly enlarges the heart shadow, tubes run down the front of the spine). The body
frame's ``u`` axis is reused as the anteroposterior axis (negative is anterior).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from locvqa_jax.data.synthetic import raster
from locvqa_jax.data.synthetic.canvas import Canvas
from locvqa_jax.data.synthetic.findings_draw import plan, strength
from locvqa_jax.data.synthetic.truth import Device, Finding


def _lung_outline(c: Canvas) -> np.ndarray:
  a = c.anatomy
  cp_v = max(a.cp_level) + c.acq.diaphragm_shift + 0.15
  dome_v = cp_v - 0.55
  t = np.linspace(0, 1, 40)
  anterior = np.stack([-0.1 - 0.52 * np.sin(np.pi / 2 * np.clip(t / 0.5, 0, 1)) ** 0.7,
                       t * (dome_v + 0.05)], -1)
  w = np.linspace(-0.62, 0.62, 40)
  diaphragm = np.stack([w, dome_v + (cp_v - dome_v) * np.clip((w + 0.2) / 0.82, 0, 1) ** 2
                        + 0.12 * np.clip((-0.2 - w) / 0.42, 0, 1) ** 2], -1)
  posterior = np.stack([0.18 + 0.44 * np.sin(np.pi / 2 * np.clip(t / 0.35, 0, 1)) ** 0.6,
                        t * cp_v], -1)[::-1]
  return np.concatenate([anterior, diaphragm, posterior])


def draw_lateral(c: Canvas, findings: Sequence[Finding], devices: Sequence[Device]) -> None:
  """Draws the lateral view of the patient into ``c`` (no boxes)."""
  a = c.anatomy
  u, v = c.grid(c.lo)
  front = np.interp(v, [-1.4, -0.3, 0.3, 1.2, 3.5], [-0.25, -0.45, -0.72, -0.82, -0.9])
  back = np.interp(v, [-1.4, -0.3, 0.5, 3.5], [0.5, 0.72, 0.85, 0.85])
  inside = np.clip((u - front) / 0.03, 0, 1) * np.clip((back - u) / 0.03, 0, 1)
  c.smooth += 1.15 * a.soft_tissue * inside
  # Arms raised in front of the upper chest.
  c.smooth += 0.35 * c.ellipse((0.05, -0.25), 0.45, 0.55, edge=0.8)
  lung_pts = _lung_outline(c)
  lung = c.poly(lung_pts)
  depth = np.clip(2 * raster.blur(c.poly(lung_pts, c.lo), c.px(0.12, c.lo)) - 1, 0, 1)
  c.sharp -= 0.35 * lung
  c.smooth -= 0.45 * depth
  plans = plan([f for f in findings if f.name in ("cardiomegaly", "pleural effusion",
                                                   "enlargement of the cardiac silhouette",
                                                   "blunting of the costophrenic angle")], a)
  heart_scale = plans.mods.heart_scale * c.acq.heart_magnification
  dome_v = float(lung_pts[40:80, 1].min())
  heart = c.ellipse((-0.28, dome_v - 0.22), 0.34 * heart_scale, 0.36, edge=0.1, factor=1)
  c.sharp += 0.32 * heart * lung
  uv2 = c.grid(2)
  spine_w = 0.5 + 0.02 * np.clip(uv2[1], 0, 2)
  body = np.clip((0.11 - np.abs(uv2[0] - spine_w)) / 0.02, 0, 1)
  phase = np.mod(uv2[1] / 0.11, 1.0)
  c.mid += 0.18 * a.bone_density * body * (1 - 0.5 * np.exp(-((phase - 0.5) / 0.07) ** 2))
  sternum = np.array([(-0.66, 0.05), (-0.74, 0.7), (-0.78, 1.25)])
  c.mid += 0.18 * a.bone_density * c.line(sternum, 0.05, factor=2, soft=0.01)
  trachea = np.array([(0.02, -0.8), (0.08, 0.1), (0.14, 0.6)])
  c.mid -= 0.25 * c.line(trachea, a.trachea_width * 1.1, factor=2, soft=0.015)
  c.mid += 0.03 * c.knobs.parenchyma_texture * c.poly(lung_pts, 2) * c.texture(0.035, key=1)
  for f in findings:
    if f.name in ("pleural effusion", "blunting of the costophrenic angle"):
      sev = float(f.severity)
      h = 0.06 + (0.05 if f.name.startswith("blunting") else 0.5) * sev
      level = lung_pts[:, 1].max() - h + 0.3 * h * np.clip((u - 0.0) / 0.6, 0, 1)
      fluid = c.poly(lung_pts, c.lo) * np.clip((v - level) / 0.03 + 0.5, 0, 1)
      c.smooth += 0.5 * strength(c.knobs, sev) * fluid
  for device in devices:
    if device.name in ("endotracheal tube", "enteric tube"):
      path = trachea if device.name == "endotracheal tube" else np.array(
          [(0.2, -0.8), (0.35, 0.8), (0.05, dome_v + 0.3)])
      c.sharp += 0.35 * c.knobs.device_contrast * c.line(path, 0.012, soft=0.003)
