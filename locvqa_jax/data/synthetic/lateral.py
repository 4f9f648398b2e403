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
  """Both lungs superimposed: apex, retrosternal border, diaphragm, posterior sulcus, back."""
  a = c.anatomy
  cp_v = max(a.cp_level) + c.acq.diaphragm_shift + 0.12
  dome_v = cp_v - 0.6
  top = -0.05
  centre = top + 0.45

  def smoothstep(x):
    x = np.clip(x, 0, 1)
    return x * x * (3 - 2 * x)

  # A rounded apex (half ellipse), then the retrosternal border in front and the ribs behind.
  theta = np.linspace(np.pi, 2 * np.pi, 24)
  apex = np.stack([0.6 * np.cos(theta), centre + 0.5 * np.sin(theta)], -1)
  v_a = np.linspace(dome_v + 0.12, centre, 20)
  anterior = np.stack([-0.6 - 0.26 * smoothstep((v_a - centre) / 0.55), v_a], -1)
  v_p = np.linspace(centre, cp_v + 0.02, 24)
  posterior = np.stack([0.6 + 0.28 * smoothstep((v_p - centre) / 0.45), v_p], -1)[::-1]
  w = np.linspace(-0.85, 0.88, 40)
  # Domes: highest in front of the middle, lowest in the posterior costophrenic sulcus.
  diaphragm = np.stack([w, dome_v + 0.15 * np.clip((-0.15 - w) / 0.7, 0, 1) ** 2
                        + (cp_v - dome_v) * np.clip((w + 0.15) / 1.03, 0, 1) ** 2.2], -1)
  # Traversed apex -> posterior wall -> diaphragm (back to front) -> anterior wall.
  return np.concatenate([apex, posterior[::-1], diaphragm[::-1], anterior])


def draw_lateral(c: Canvas, findings: Sequence[Finding], devices: Sequence[Device]) -> None:
  """Draws the lateral view of the patient into ``c`` (no boxes)."""
  a = c.anatomy
  u, v = c.grid(c.lo)
  front = np.interp(v, [-1.4, -0.6, 0.1, 1.0, 3.5], [-0.75, -0.8, -1.0, -1.06, -1.1])
  back = np.interp(v, [-1.4, -0.6, 0.3, 3.5], [0.85, 0.9, 1.05, 1.08])
  depth = np.clip((u - front) / (back - front), 0, 1)
  body = np.sqrt(np.clip(1 - (2 * depth - 1) ** 2, 0, 1)) ** 0.5 * (depth > 0) * (depth < 1)
  c.smooth += 1.0 * a.soft_tissue * body
  # Raised arms overlap the upper chest.
  c.smooth += 0.4 * c.ellipse((-0.05, -0.6), 0.9, 0.7, edge=0.9)
  lung_pts = _lung_outline(c)
  lung = c.poly(lung_pts)
  lung_lo = c.poly(lung_pts, c.lo)
  air = np.clip(2 * raster.blur(lung_lo, c.px(0.15, c.lo)) - 1, 0, 1)
  plans = plan([f for f in findings if f.name in ("cardiomegaly",
                                                   "enlargement of the cardiac silhouette")], a)
  scale = plans.mods.heart_scale * c.acq.heart_magnification
  dome_v = float(lung_pts[48:88, 1].min())
  # The heart sits on the anterior diaphragm and displaces lung air where it projects.
  heart_lo = c.ellipse((-0.42 - 0.05 * (scale - 1), dome_v - 0.05), 0.42 * scale, 0.45,
                       edge=0.08, angle=0.5)
  heart = c.ellipse((-0.42 - 0.05 * (scale - 1), dome_v - 0.05), 0.42 * scale, 0.45,
                    edge=0.08, angle=0.5, factor=2)
  c.sharp -= 0.25 * lung
  c.mid += 0.2 * heart * c.poly(lung_pts, 2)
  c.smooth -= 0.45 * air * (1 - 0.75 * heart_lo)
  c.smooth += 0.12 * c.ellipse((0.1, 0.78), 0.14, 0.18, edge=0.9)  # hila
  uv2 = c.grid(2)
  centre = 0.64 + 0.03 * np.clip(uv2[1], 0, 2)
  vertebra = np.clip((0.11 - np.abs(uv2[0] - centre)) / 0.015, 0, 1)
  phase = np.mod(uv2[1] / 0.11, 1.0)
  c.mid += 0.16 * a.bone_density * vertebra * (1 - 0.5 * np.exp(-((phase - 0.5) / 0.07) ** 2))
  # Posterior elements and ribs behind the vertebral bodies.
  ribs = np.clip(1 - np.abs(np.mod((uv2[1] - 0.25 * uv2[0]) / 0.15, 1.0) - 0.5) / 0.18, 0, 1)
  c.mid += 0.06 * a.bone_density * ribs * np.clip((uv2[0] - 0.3) / 0.1, 0, 1) * (
      uv2[0] < 0.95) * (uv2[1] > -0.1) * (uv2[1] < 1.8)
  sternum = np.array([(-0.84, 0.05), (-0.9, 0.6), (-0.94, 1.15)])
  c.mid += 0.2 * a.bone_density * c.tube(sternum, 0.06, factor=2)
  trachea = raster.bezier((0.0, -0.7), (0.08, 0.1), (0.2, 0.62), 16)
  c.mid -= 0.22 * c.tube(trachea, a.trachea_width * 1.1, factor=2)
  arch = raster.bezier((-0.2, 0.75), (-0.05, 0.2), (0.35, 0.55), 16)
  c.mid += 0.06 * c.tube(arch, 0.12, factor=2)
  texture = 0.6 * c.texture(0.03, key=1) + 0.4 * c.texture(0.08, key=4)
  c.mid += 0.045 * c.knobs.parenchyma_texture * c.poly(lung_pts, 2) * (1 - heart) * texture
  for f in findings:
    if f.name in ("pleural effusion", "blunting of the costophrenic angle"):
      sev = float(f.severity)
      h = 0.08 + (0.06 if f.name.startswith("blunting") else 0.5) * sev
      # Fluid collects in the posterior sulcus, climbing up the back.
      level = lung_pts[:, 1].max() - h - 0.35 * h * np.clip(u / 0.8, 0, 1) ** 2
      fluid = lung_lo * np.clip((v - level) / 0.03 + 0.5, 0, 1)
      c.smooth += 0.5 * strength(c.knobs, sev) * fluid
  for device in devices:
    if device.name in ("endotracheal tube", "enteric tube"):
      path = trachea[:12] if device.name == "endotracheal tube" else raster.bezier(
          (0.25, -0.8), (0.4, 0.9), (-0.05, dome_v + 0.35), 24)
      c.sharp += 0.35 * c.knobs.device_contrast * c.line(path, 0.012)
