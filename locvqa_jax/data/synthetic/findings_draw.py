"""Findings drawn where their ``Finding`` says, sized by severity, textured by type.

Two passes: ``plan`` turns findings that move anatomy (cardiomegaly, large effusion, pneumothorax,
vascular congestion, rib fracture) into geometry changes before the chest is drawn; ``draw`` then
adds the densities and returns, per finding, the pixel boxes of what it drew. Shapes and textures
come from a generator keyed by the patient and the finding's name, side and zone, so a finding
that persists across studies keeps its shape and only grows or shrinks with severity.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Callable, Sequence

import numpy as np

from locvqa_jax.data.synthetic import raster
from locvqa_jax.data.synthetic.anatomy import SIDE_SIGN, SIDES, Anatomy
from locvqa_jax.data.synthetic.canvas import Canvas
from locvqa_jax.data.synthetic.geometry import Modifiers
from locvqa_jax.data.synthetic.knobs import RenderKnobs
from locvqa_jax.data.synthetic.truth import DRAWABLE_FINDINGS, Box, Finding

# Relative height (0 apex, 1 costophrenic angle) of the centre of each zone and its extent.
_ZONES = {"apical": (0.02, 0.18), "upper": (0.12, 0.4), "mid": (0.4, 0.65),
          "lower": (0.62, 0.9), "base": (0.8, 0.98)}
_DEFAULT_ZONE = {"pleural effusion": "base", "blunting of the costophrenic angle": "base",
                 "atelectasis": "lower", "pneumothorax": "apical", "lung opacity": "lower",
                 "consolidation": "lower", "pneumonia": "lower", "fracture": "mid"}


@dataclasses.dataclass
class Plan:
  """Geometry changes caused by the findings of one study."""

  mods: Modifiers
  fractures: list[tuple[str, int, float, float]]
  vessel_boost: float


def finding_rng(anatomy: Anatomy, f: Finding) -> np.random.Generator:
  """Generator fixed by the patient and the finding's identity (not its severity)."""
  key = zlib.crc32(f"{f.name}|{f.side}|{f.zone}".encode())
  return np.random.default_rng([anatomy.seed, key])


def sides_of(anatomy: Anatomy, f: Finding, default_both: bool = False) -> tuple[str, ...]:
  """Sides a finding occupies: 'bilateral' is both, None is a stable random side."""
  if f.side == "bilateral" or (f.side is None and default_both):
    return SIDES
  if f.side is None:
    return (SIDES[int(finding_rng(anatomy, f).integers(2))],)
  if f.side not in SIDES:
    raise ValueError(f"Finding {f.name!r}: side must be 'left', 'right', 'bilateral' or None, "
                     f"got {f.side!r}")
  return (f.side,)


def _zone(f: Finding) -> str:
  zone = f.zone or _DEFAULT_ZONE.get(f.name, "mid")
  if zone not in _ZONES:
    raise ValueError(f"Finding {f.name!r}: zone must be one of {sorted(_ZONES)} or None, got "
                     f"{f.zone!r}")
  return zone


def _severity(f: Finding) -> float:
  if not 0.0 <= f.severity <= 1.0:
    raise ValueError(f"Finding {f.name!r}: severity must lie in [0, 1], got {f.severity!r}")
  return float(f.severity)


def strength(knobs: RenderKnobs, severity: float) -> float:
  """Density factor of a finding: subtle at low severity when ``severity_floor`` is low."""
  return knobs.finding_contrast * (knobs.severity_floor + (1 - knobs.severity_floor) * severity)


def plan(findings: Sequence[Finding], anatomy: Anatomy) -> Plan:
  """Geometry changes implied by ``findings`` (see module docstring)."""
  heart, shift, boost = 1.0, 0.0, 0.0
  collapse: dict[str, float] = {}
  fractures = []
  for f in findings:
    if f.name not in DRAWABLE_FINDINGS:
      raise ValueError(f"render: finding name {f.name!r} is not drawable; expected one of "
                       f"{DRAWABLE_FINDINGS}")
    sev = _severity(f)
    if f.name in ("cardiomegaly", "enlargement of the cardiac silhouette"):
      # Any cardiomegaly has a cardiothoracic ratio above 0.5 on PA, growing with severity.
      ratio = 0.53 + 0.2 * sev
      scale = ratio * sum(anatomy.lung_width) / sum(anatomy.heart_half_width)
      heart = max(heart, scale, 1.05)
    elif f.name == "pleural effusion" and sev > 0.65:
      for side in sides_of(anatomy, f):
        shift -= SIDE_SIGN[side] * 0.12 * (sev - 0.65) / 0.35
    elif f.name == "pneumothorax":
      for side in sides_of(anatomy, f):
        collapse[side] = max(collapse.get(side, 0.0), 0.06 + 0.5 * sev)
    elif f.name in ("vascular congestion", "edema"):
      boost = max(boost, (0.4 + 0.6 * sev) if f.name == "vascular congestion" else 0.5 * sev)
    elif f.name == "fracture":
      rng = finding_rng(anatomy, f)
      for side in sides_of(anatomy, f):
        width = anatomy.side_value(anatomy.lung_width, side)
        x_f = float(rng.uniform(0.6, 0.85)) * width
        lo, hi = _ZONES[_zone(f)]
        target = (lo + hi) / 2 * anatomy.side_value(anatomy.cp_level, side)
        a1, a3 = anatomy.rib_curve
        levels = [anatomy.rib_first + anatomy.rib_spacing * (k + anatomy.rib_growth * k * k)
                  - a1 * x_f + a3 * x_f ** 3 for k in range(11)]
        rib = int(np.argmin(np.abs(np.array(levels) - target)))
        fractures.append((side, rib, x_f, 0.02 + 0.04 * sev))
  return Plan(Modifiers(heart, shift, tuple(sorted(collapse.items()))), fractures, boost)


def _zone_band(c: Canvas, side: str, zone: str) -> tuple[float, float]:
  """Heights where a finding of ``zone`` is centred: fractions of apex-to-dome height, so the
  finding sits in aerated lung rather than behind the diaphragm."""
  top = c.thorax.zones[side][0]
  bottom = c.thorax.dome[side][1]
  lo, hi = _ZONES[zone]
  return top + lo * (bottom - top), top + hi * (bottom - top)


def _zone_point(c: Canvas, side: str, zone: str, rng: np.random.Generator,
                lateral: tuple[float, float] = (0.35, 0.75)) -> tuple[float, float]:
  """A point inside the lung of ``side`` within ``zone`` (fractions across from the medial)."""
  v0, v1 = _zone_band(c, side, zone)
  v = v0 + (v1 - v0) * float(rng.uniform(0.3, 0.7))
  lung = c.thorax.lungs[side]
  near = lung[np.abs(lung[:, 1] - v) < 0.08]
  near = near if len(near) >= 2 else lung
  u0, u1 = near[:, 0].min(), near[:, 0].max()
  frac = float(rng.uniform(*lateral))
  medial_first = SIDE_SIGN[side] > 0
  u = u0 + (u1 - u0) * (frac if medial_first else 1 - frac)
  return u, v


def _box(mask: np.ndarray, factor: int, threshold: float) -> list[Box]:
  box = raster.box_of_mask(mask, threshold)
  return [] if box is None else [tuple(float(x) * factor for x in box)]


def _effusion(c: Canvas, f: Finding, blunting: bool = False) -> list[Box]:
  sev = _severity(f)
  u, v = c.grid(2)
  boxes = []
  for side in sides_of(c.anatomy, f):
    sign = SIDE_SIGN[side]
    top, _, _, bottom = c.thorax.zones[side]
    height = bottom - top
    h = (0.03 + 0.05 * sev if blunting else 0.07 + 0.55 * sev) * height
    width = c.anatomy.side_value(c.anatomy.lung_width, side)
    x = np.clip(sign * u / width, 0, 1)
    # Meniscus: flat medially, climbing the lateral chest wall (concave upper border).
    climb = (0.45 * h + 0.04) * x ** 3
    level = bottom - h - climb
    lung = c.lung_mask(side, 2)
    # Fluid thins toward its upper border, so the edge is soft rather than a cut.
    fluid = lung * np.clip((v - level) / 0.1 + 0.2, 0, 1) ** 1.5
    density = 0.5 * strength(c.knobs, sev)
    c.mid += density * fluid
    c.hide_markings(fluid, 2)
    if f.type == "layering" or (c.acq.view == "AP" and not blunting):
      c.mid += 0.15 * strength(c.knobs, sev) * sev * lung * np.clip((v - top) / height, 0, 1)
    boxes += _box(fluid, 2, 0.5)
  return boxes


def _atelectasis(c: Canvas, f: Finding) -> list[Box]:
  sev, rng = _severity(f), finding_rng(c.anatomy, f)
  boxes = []
  for side in sides_of(c.anatomy, f):
    lung = c.lung_mask(side, 2)
    field = np.zeros_like(lung)
    thick = (0.01 if f.type == "linear" else 0.022) + 0.015 * sev
    for i in range(3):
      centre = _zone_point(c, side, _zone(f), rng)
      angle = float(rng.uniform(-0.3, 0.3)) + SIDE_SIGN[side] * 0.12
      if i < 1 + int(sev * 2.5):
        length = 0.12 + 0.22 * sev
        field = np.maximum(field, c.ellipse(centre, length, thick, edge=0.6, angle=angle,
                                            factor=2))
    if f.type == "compressive" or sev > 0.75:
      # Volume loss at the base: a triangular density against the mediastinum.
      pu, pv = c.thorax.cardiophrenic[side]
      field = np.maximum(field, 0.8 * c.ellipse((pu + SIDE_SIGN[side] * 0.15, pv - 0.12),
                                                0.18 * sev, 0.22 * sev + 0.02, edge=0.8,
                                                factor=2))
    field *= lung
    c.mid += 0.38 * strength(c.knobs, sev) * field
    boxes += _box(field, 2, 0.3)
  return boxes


_OPACITY_DENSITY = {"lung opacity": 0.3, "consolidation": 0.45, "pneumonia": 0.38}


def _opacity(c: Canvas, f: Finding) -> list[Box]:
  sev, rng = _severity(f), finding_rng(c.anatomy, f)
  density = _OPACITY_DENSITY[f.name] * (1.3 if f.type == "dense" else 1.0)
  texture_weight = c.knobs.finding_texture
  if f.type == "ground-glass":
    density, texture_weight = density * 0.7, texture_weight * 0.3
  radius = 0.1 + 0.22 * sev
  n_blobs = 3 if f.type == "multifocal" else 1
  if f.type in ("focal", "multifocal"):
    radius *= 0.6
  if f.type == "interstitial":
    patch = np.clip(1.2 - 2.5 * np.abs(c.texture(0.04, key=3)), 0, 1)
  else:
    patch = np.clip(0.55 + 0.6 * c.texture(0.07, key=2), 0, 1)
  boxes = []
  for side in sides_of(c.anatomy, f):
    lung = c.lung_mask(side, 2)
    env = np.zeros_like(lung)
    centres = [_zone_point(c, side, _zone(f), rng) for _ in range(n_blobs)]
    for cu, cv in centres:
      env = np.maximum(env, c.ellipse((cu, cv), radius, radius * 1.25, edge=1.2, factor=2))
    field = env * lung * ((1 - texture_weight) + texture_weight * patch)
    if f.name != "lung opacity" and sev > 0.3 and f.type != "interstitial":
      # Air bronchograms: dark branching airways inside the dense airspace.
      hu, hv = c.thorax.hilum[side]
      for cu, cv in centres:
        for _ in range(3):
          tip = (cu + rng.normal(0, radius * 0.5), cv + rng.normal(0, radius * 0.5))
          mid_pt = ((hu + tip[0]) / 2 * 0.3 + tip[0] * 0.7, (hv + tip[1]) / 2 * 0.3 + tip[1] * 0.7)
          air = c.line(np.array([mid_pt, tip]), 0.014, factor=2, soft=0.004)
          field -= 0.5 * air * env * lung
    c.mid += density * strength(c.knobs, sev) * np.clip(field, 0, None)
    boxes += _box(env * lung, 2, 0.35)
  return boxes


def _edema(c: Canvas, f: Finding) -> list[Box]:
  sev, rng = _severity(f), finding_rng(c.anatomy, f)
  u, v = c.grid(c.lo)
  boxes = []
  for side in sides_of(c.anatomy, f, default_both=True):
    sign = SIDE_SIGN[side]
    hu, hv = c.thorax.hilum[side]
    lung = c.lung_mask(side, c.lo)
    # Perihilar "bat wing" haze fading toward the periphery.
    haze = c.ellipse((hu + sign * 0.12, hv + 0.05), 0.3 + 0.25 * sev, 0.45 + 0.2 * sev, edge=1.6)
    haze = haze * lung
    c.smooth += 0.3 * strength(c.knobs, sev) * haze
    if sev > 0.35:
      # Kerley B lines: short horizontal lines at the lateral bases.
      cu, cv = c.thorax.cp[side]
      for i in range(5):
        y = cv - 0.08 - 0.045 * i + float(rng.normal(0, 0.01))
        line = np.array([(cu - sign * 0.01, y), (cu - sign * (0.08 + 0.03 * rng.random()), y)])
        c.sharp += 0.12 * strength(c.knobs, sev) * c.line(line, 0.006)
    boxes += _box(haze, c.lo, 0.35)
  return boxes


def _congestion(c: Canvas, f: Finding) -> list[Box]:
  sev = _severity(f)
  boxes = []
  for side in sides_of(c.anatomy, f, default_both=True):
    hu, hv = c.thorax.hilum[side]
    blob = c.ellipse((hu + SIDE_SIGN[side] * 0.05, hv - 0.05), 0.17, 0.26, edge=1.0)
    c.smooth += 0.1 * strength(c.knobs, sev) * blob
    boxes += _box(blob, c.lo, 0.4)
  return boxes


def _heart(c: Canvas, f: Finding) -> list[Box]:
  hr, hl, htop, hbot = c.thorax.heart_extent
  corners = np.array([(hr, htop), (hl, htop), (hl, hbot), (hr, hbot)])
  return [c.acq.box_of(corners)]


def _pneumothorax(c: Canvas, f: Finding) -> list[Box]:
  sev = _severity(f)
  boxes = []
  for side in sides_of(c.anatomy, f):
    space = np.clip(c.lung_mask(side, 2) - c.aerated_mask(side, 2), 0, 1)
    # No lung tissue in the space: darker than the lung periphery, no markings.
    c.mid -= 0.14 * strength(c.knobs, sev) * space
    near = c.up(np.clip(raster.blur(space, c.px(0.01, 2)) * 3, 0, 1))
    pleura = c.line(_closed(c.thorax.aerated[side]), 0.006)
    c.sharp += 0.2 * strength(c.knobs, sev) * pleura * near
    # Box the part of the outline that actually moved away from the chest wall.
    full, aerated = c.thorax.lungs[side], c.thorax.aerated[side]
    moved = np.hypot(*(full - aerated).T) > 0.035
    if moved.any():
      boxes.append(c.acq.box_of(np.concatenate([full[moved], aerated[moved]])))
  return boxes


def _closed(poly: np.ndarray) -> np.ndarray:
  """Closes an outline so a polyline through it returns to its start."""
  return np.concatenate([poly, poly[:1]])


def _spots(c: Canvas, f: Finding) -> list[Box]:
  sev, rng = _severity(f), finding_rng(c.anatomy, f)
  calcified = f.name == "calcification"
  boxes = []
  for side in sides_of(c.anatomy, f):
    n = 1 + int(sev * 2.2) if calcified else 1
    pts = []
    for _ in range(n):
      cu, cv = _zone_point(c, side, _zone(f), rng, lateral=(0.25, 0.8))
      r = (0.011 + 0.008 * sev) if calcified else (0.017 + 0.012 * sev)
      where, disc = c.spot((cu, cv), r)
      c.sharp[where] += (0.7 if calcified else 0.5) * np.sqrt(strength(c.knobs, sev)) * disc
      pts += [(cu - 1.6 * r, cv - 1.6 * r), (cu + 1.6 * r, cv + 1.6 * r)]
    boxes.append(c.acq.box_of(np.array(pts)))
  return boxes


def _fracture(c: Canvas, f: Finding) -> list[Box]:
  a = c.anatomy
  boxes = []
  a1, a3 = a.rib_curve
  for side, rib, x_f, _ in plan([f], a).fractures:
    level = a.rib_first + a.rib_spacing * (rib + a.rib_growth * rib ** 2)
    v = level - a1 * x_f + a3 * x_f ** 3
    u = SIDE_SIGN[side] * x_f
    boxes.append(c.acq.box_of(np.array([(u - 0.07, v - 0.06), (u + 0.07, v + 0.07)])))
  return boxes


_DRAW: dict[str, Callable[[Canvas, Finding], list[Box]]] = {
    "pleural effusion": _effusion,
    "blunting of the costophrenic angle": lambda c, f: _effusion(c, f, blunting=True),
    "atelectasis": _atelectasis,
    "lung opacity": _opacity,
    "consolidation": _opacity,
    "pneumonia": _opacity,
    "edema": _edema,
    "vascular congestion": _congestion,
    "cardiomegaly": _heart,
    "enlargement of the cardiac silhouette": _heart,
    "pneumothorax": _pneumothorax,
    "granuloma": _spots,
    "calcification": _spots,
    "fracture": _fracture,
}
if set(_DRAW) != set(DRAWABLE_FINDINGS):
  raise ImportError(f"findings_draw: drawers {sorted(_DRAW)} do not match truth.DRAWABLE_FINDINGS")


def draw(c: Canvas, findings: Sequence[Finding]) -> list[list[Box]]:
  """Adds every finding's density to ``c``; returns its pixel boxes, in input order."""
  return [_DRAW[f.name](c, f) for f in findings]

