"""Normal frontal anatomy as attenuation (air 0, soft tissue about 1, bone and metal more).

Each structure adds to or removes from a layer of the ``Canvas``; ``film.py`` then turns the total
into display brightness. Amplitudes are relative to the soft tissue through the mid-chest.
"""

from __future__ import annotations

import numpy as np

from locvqa_jax.data.synthetic import raster
from locvqa_jax.data.synthetic.anatomy import SIDE_SIGN, SIDES
from locvqa_jax.data.synthetic.canvas import Canvas


def _body(c: Canvas) -> None:
  a, mid = c.anatomy, c.thorax.midline
  u, v = c.grid(c.lo)
  bw = a.body_half_width
  # Neck, then the trapezius slope out to the shoulders, then the chest wall.
  slope = np.clip((v + 0.6) / 0.65, 0, 1)
  half = np.where(v < 0.05, 0.4 + (bw - 0.4) * (1 - (1 - slope) ** 2) ** 1.5,
                  bw * (1 + 0.02 * np.clip(v, 0, 2)))
  centre = mid * np.clip((v + 0.2) / 0.4, 0, 1)
  profile = np.sqrt(np.clip(1 - ((u - centre) / half) ** 2, 0, 1))
  thickness = np.interp(v, [-1.4, -0.4, 0.1, 3.6], [0.7, 0.75, 1.0, 1.05])
  c.smooth += a.soft_tissue * thickness * (0.08 + 0.92 * profile ** 1.3) * (profile > 0)
  for sign in (-1.0, 1.0):
    # Shoulder and upper arm soft tissue at the top corners.
    c.smooth += 0.5 * c.ellipse((sign * (bw + 0.08), -0.02), 0.3, 0.5, edge=0.6)
  if a.sex == "F":
    for side in SIDES:
      cu, cv = SIDE_SIGN[side] * 0.62, c.thorax.zones[side][2] + 0.3
      breast = c.ellipse((cu, cv), 0.55, 0.42, edge=0.7)
      c.smooth += 0.14 * breast * np.clip((v - cv + 0.35) / 0.15, 0, 1)
  for sign in (-1.0, 1.0):
    c.mid += 0.18 * a.bone_density * c.ellipse((sign * (bw + 0.12), -0.03), 0.22, 0.25,
                                              edge=0.3, factor=2)


def _lungs(c: Canvas) -> None:
  for side in SIDES:
    c.lung[side] = c.poly(c.thorax.lungs[side])
    collapsed = c.thorax.aerated[side] is not c.thorax.lungs[side]
    c.aerated[side] = c.poly(c.thorax.aerated[side]) if collapsed else c.lung[side]
    depth = np.clip(2 * raster.blur(c.lung_mask(side, c.lo), c.px(0.12, c.lo)) - 1, 0, 1)
    c.sharp -= 0.17 * c.lung[side]
    c.smooth -= 0.44 * depth
    if collapsed:
      # A collapsed lung leaves air without markings between it and the chest wall.
      c.sharp -= 0.08 * np.clip(c.lung[side] - c.aerated[side], 0, 1)


def _mediastinum(c: Canvas) -> None:
  t, a = c.thorax, c.anatomy
  u, v = c.grid(c.lo)
  # Mediastinum and heart fade out below the domes, where the abdomen is just as dense.
  dome_v = min(t.dome["right"][1], t.dome["left"][1])
  fade = np.clip((dome_v + 0.15 - c.grid(2)[1]) / 0.2, 0, 1)
  c.mid += (0.07 * c.poly(t.mediastinum, 2) + 0.05 * c.poly(t.heart, 2)) * fade
  heart_lo = c.poly(t.heart, factor=c.lo)
  c.smooth += 0.1 * raster.blur(heart_lo, c.px(0.1, c.lo)) * heart_lo * np.clip(
      (dome_v + 0.15 - v) / 0.2, 0, 1)
  # Lower-lobe air behind the heart keeps the retrocardiac region a little darker.
  hr, hl, htop, hbot = t.heart_extent
  retro = c.ellipse((t.midline + 0.3, (htop + hbot) / 2 + 0.15), 0.25, 0.3, edge=1.0)
  c.smooth -= 0.08 * retro * heart_lo
  c.smooth += 0.08 * c.ellipse((t.knob[0] - t.knob[2] * 0.9, t.knob[1]), t.knob[2] * 1.1,
                               t.knob[2], edge=0.5)
  bu, br = a.gastric_bubble
  if br > 0:
    dome_v = t.dome["left"][1]
    centre_v = dome_v + 0.06 + br * 0.8
    bubble = c.ellipse((t.midline + bu, centre_v), br * 1.5, br, edge=0.4, factor=2)
    # Gas rises: a dome-shaped top over a flat air-fluid level.
    v2 = c.grid(2)[1]
    c.mid -= 0.3 * bubble * (v2 > dome_v + 0.04) * np.clip((centre_v + 0.2 * br - v2) / 0.01,
                                                           0, 1)
  # The liver makes the right upper abdomen slightly denser.
  c.smooth += 0.06 * np.clip((v - t.dome["right"][1]) / 0.2, 0, 1) * (u < t.midline + 0.2)
  for side in SIDES:
    hu, hv = t.hilum[side]
    # Hila: the pulmonary arteries and veins where they enter the lung.
    c.smooth += 0.13 * c.ellipse((hu, hv + 0.02), 0.1, 0.18, edge=0.9)


def _airways(c: Canvas) -> None:
  t, a = c.thorax, c.anatomy
  c.mid -= 0.22 * c.tube(t.trachea, a.trachea_width, factor=2)
  for side in SIDES:
    bronchus = raster.bezier(*t.bronchi[side], n=12)
    c.mid -= 0.14 * c.tube(bronchus, np.linspace(0.65, 0.4, 12) * a.trachea_width, factor=2)


def _spine(c: Canvas) -> None:
  a, mid = c.anatomy, c.thorax.midline
  # Only the columns the spine can cover (it is near-vertical even in a rotated study).
  reach = a.spine_width * 0.8 + abs(mid)
  corners = c.to_px(np.array([(-reach, -2.0), (reach, -2.0), (-reach, 4.0), (reach, 4.0)]), 2)
  c0 = int(np.clip(np.floor(corners[:, 0].min()), 0, c.mid.shape[1]))
  c1 = int(np.clip(np.ceil(corners[:, 0].max()) + 1, c0, c.mid.shape[1]))
  u, v = (g[:, c0:c1] for g in c.grid(2))
  x = u - mid * np.clip((v + 0.2) / 0.4, 0, 1)
  half = a.spine_width / 2 * (1 + 0.25 * np.clip(v / 2, 0, 1))
  body = np.clip((half - np.abs(x)) / 0.015, 0, 1)
  phase = np.mod(v / (0.1 + 0.02 * np.clip(v / 2, 0, 1)), 1.0)
  disc = np.exp(-((phase - 0.5) / 0.06) ** 2)
  pedicle = np.exp(-((np.abs(x) - half * 0.7) / (half * 0.18)) ** 2 - ((phase - 0.25) / 0.15) ** 2)
  spinous = np.exp(-(x / (half * 0.15)) ** 2 - ((phase - 0.75) / 0.2) ** 2)
  c.mid[:, c0:c1] += a.bone_density * (body * (0.11 - 0.035 * disc) + 0.05 * pedicle
                                       + 0.035 * spinous)


def rib_level(c: Canvas, rib: float) -> float:
  """Height of posterior rib ``rib`` (0 = first) where it meets the spine."""
  a = c.anatomy
  return a.rib_first + a.rib_spacing * (rib + a.rib_growth * rib ** 2)


def _rib_index(c: Canvas, w: np.ndarray, last: int) -> np.ndarray:
  a = c.anatomy
  rel = (w - a.rib_first) / a.rib_spacing
  g = a.rib_growth
  k = np.round((-1 + np.sqrt(np.maximum(1 + 4 * g * rel, 0))) / (2 * g))
  return np.clip(k, 0, last)


def _ribs(c: Canvas, fractures: list[tuple[str, int, float, float]]) -> None:
  """Posterior and anterior ribs as one phase field per family (no per-rib loops)."""
  a = c.anatomy
  u, v = c.grid(2)
  x = np.abs(u)
  a1, a3 = a.rib_curve
  w = v + a1 * x - a3 * x ** 3
  gap = np.zeros_like(u)
  for side, rib, x_f, step in fractures:
    near = (np.sign(u) == SIDE_SIGN[side]) & (np.abs(w - rib_level(c, rib)) < a.rib_spacing * 0.6)
    w = w - near * step * np.clip((x - x_f) / 0.01, 0, 1)
    gap += near * np.exp(-((x - x_f) / 0.01) ** 2)
  k = _rib_index(c, w, 11)
  d = np.abs(w - rib_level(c, k)) / (a.rib_thickness * (1 + 0.04 * k) / 2)
  band = np.clip((1 - d) / 0.2, 0, 1) * (0.6 + 0.4 * d ** 4)
  lateral_end = a.lung_width[0] + 0.14
  reach = np.clip((x - a.spine_width * 0.45) / 0.04, 0, 1) * np.clip((lateral_end - x) / 0.1, 0, 1)
  posterior = band * reach * (1 - np.clip(gap, 0, 1))
  # Anterior ribs continue from the lateral wall, sloping down toward the costal cartilages.
  wa = v - 0.55 * (1.0 - x) - (a3 - a1)
  ka = _rib_index(c, wa, 9)
  da = np.abs(wa - rib_level(c, ka)) / (a.rib_thickness * 0.55)
  reach_a = np.clip((x - 0.38) / 0.15, 0, 1) * np.clip((lateral_end - x) / 0.12, 0, 1)
  anterior = np.clip((1 - da) / 0.25, 0, 1) * reach_a * (v > 0.05)
  # Ribs read clearly against aerated lung and fade against the dense abdomen and neck.
  weight = 0.25 + 0.75 * np.clip(c.lung_mask("right", 2) + c.lung_mask("left", 2), 0, 1)
  c.mid += a.bone_density * c.knobs.rib_contrast * weight * (0.11 * posterior + 0.05 * anterior)


def _clavicles_scapulae(c: Canvas) -> None:
  a, t = c.anatomy, c.thorax
  bone = a.bone_density * c.knobs.rib_contrast
  for side in SIDES:
    sign = SIDE_SIGN[side]
    # Clavicles: thick medial heads, a slimmer shaft, a broad lateral end; brighter cortex.
    along = np.linspace(0, 1, len(t.clavicles[side]))
    width = a.clavicle[2] * (1.15 - 0.35 * np.sin(np.pi * along) + 0.15 * along)
    shaft = c.tube(t.clavicles[side], width, factor=2)
    core = c.tube(t.clavicles[side], width * 0.55, factor=2)
    c.mid += bone * (0.17 * shaft - 0.05 * core)
    # The scapula's medial border projects over the upper lung on AP, beside it on PA.
    inset = 0.2 if c.acq.view == "AP" else 0.0
    blade = np.array([(sign * (1.05 - inset), -0.05), (sign * (1.3 - inset * 0.5), -0.1),
                      (sign * (1.22 - inset * 0.5), 0.95)])
    c.mid += 0.06 * bone * c.poly(blade, factor=2)


def _vessels(c: Canvas, boost: float) -> None:
  a, t = c.anatomy, c.thorax
  segs = a.vessels.astype(np.float64).copy()
  widths = segs[:, 6].copy()
  values = np.full(len(segs), 0.085 * c.knobs.vessel_contrast)
  for side in SIDES:
    on = segs[:, 7] == SIDE_SIGN[side]
    # The tree is stored relative to the hilum; below it, it stretches with inspiration.
    hu, hv = t.hilum[side]
    stretch = (t.cp[side][1] - hv) / (a.side_value(a.cp_level, side)
                                      - a.side_value(a.hilum_v, side))
    for col_u, col_v in ((0, 1), (2, 3), (4, 5)):
      dv = segs[on, col_v]
      segs[on, col_u] = hu + segs[on, col_u]
      segs[on, col_v] = hv + np.where(dv > 0, dv * stretch, dv)
    if boost:
      upper = on & (segs[:, 1] < hv)
      widths[upper] *= 1 + 0.8 * boost
      values[upper] *= 1 + 0.6 * boost
  # Thinner generations are fainter too (smaller cylinders), so markings fade to the periphery.
  values = values * np.sqrt(widths / widths.max())
  pts = c.acq.to_pixels(segs[:, :6].reshape(-1, 2)).reshape(-1, 6)
  img = raster.soften(raster.polylines_image(c.shape(1), pts, widths * c.acq.scale, values), 1.0)
  c.markings = img * np.clip(c.aerated["right"] + c.aerated["left"], 0, 1)
  c.sharp += c.markings
  for side in SIDES:
    hu, hv = t.hilum[side]
    c.smooth += 0.08 * boost * c.ellipse((hu, hv), 0.12, 0.18, edge=0.9)


def draw_anatomy(c: Canvas, fractures: list[tuple[str, int, float, float]],
                 vessel_boost: float) -> None:
  """Draws the normal anatomy into ``c``; fills ``c.lung`` and ``c.aerated``.

  Args:
    c: the canvas.
    fractures: (side, rib index, distance from the midline, step) rib breaks to draw.
    vessel_boost: 0..1 thickening of the upper-zone vessels (vascular congestion).
  """
  _body(c)
  _lungs(c)
  _mediastinum(c)
  _airways(c)
  _spine(c)
  _ribs(c, fractures)
  _clavicles_scapulae(c)
  _vessels(c, vessel_boost)
  lungs = c.aerated_mask("right", 2) + c.aerated_mask("left", 2)
  texture = 0.6 * c.texture(0.03, key=1) + 0.4 * c.texture(0.08, key=4)
  c.mid += 0.045 * c.knobs.parenchyma_texture * lungs * texture
