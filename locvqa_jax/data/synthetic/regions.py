"""Pixel boxes of the 36 Chest ImaGenome regions, computed from the outlines that are drawn.

Regions that follow an outline (lungs, zones, hemidiaphragms, clavicles, mediastinum) are boxed
around the projected outline points, so rotation and magnification move and resize them exactly as
they move the drawing; the rest are rectangles around landmarks (hila, angles, carina), projected
corner by corner.
"""

from __future__ import annotations

import numpy as np

from locvqa_jax.data import tasks
from locvqa_jax.data.synthetic.acquisition import Acquisition
from locvqa_jax.data.synthetic.anatomy import SIDE_SIGN, SIDES, Anatomy
from locvqa_jax.data.synthetic.geometry import Thorax

# The 36 object names of Chest ImaGenome scene graphs, in the order of DATA_FORMATS.md 2.4.
REGION_NAMES = tasks.REGION_NAMES


def densify(poly: np.ndarray, closed: bool = True, step: float = 0.01) -> np.ndarray:
  """Resamples an outline [N, 2] so consecutive points are at most ``step`` apart."""
  pts = np.concatenate([poly, poly[:1]]) if closed else np.asarray(poly)
  arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(pts, axis=0).T))])
  at = np.union1d(np.linspace(0, arc[-1], int(np.ceil(arc[-1] / step)) + 1), arc)
  return np.stack([np.interp(at, arc, pts[:, 0]), np.interp(at, arc, pts[:, 1])], -1)


def band(poly: np.ndarray, v0: float, v1: float) -> np.ndarray:
  """Points of a closed outline whose height lies in [v0, v1] (the band's boundary)."""
  dense = densify(poly)
  keep = dense[(dense[:, 1] >= v0) & (dense[:, 1] <= v1)]
  return keep if len(keep) else dense


def rect(u0: float, v0: float, u1: float, v1: float) -> np.ndarray:
  """Corners [4, 2] of an axis-aligned body-frame rectangle (u0, u1 in either order)."""
  return np.array([(u0, v0), (u1, v0), (u1, v1), (u0, v1)], np.float64)


def _around(point: tuple[float, float], du: float, dv: float) -> np.ndarray:
  u, v = point
  return rect(u - du, v - dv, u + du, v + dv)


def region_boxes(thorax: Thorax, anatomy: Anatomy, acq: Acquisition
                 ) -> dict[str, tuple[float, float, float, float]]:
  """All 36 region boxes in pixels, (x1, y1, x2, y2); may extend past the image edge."""
  shapes: dict[str, np.ndarray] = {}
  mid = thorax.midline
  for side in SIDES:
    sign = SIDE_SIGN[side]
    lung = thorax.lungs[side]
    top, b1, b2, bottom = thorax.zones[side]
    shapes[f"{side} lung"] = lung
    shapes[f"{side} upper lung zone"] = band(lung, top, b1)
    shapes[f"{side} mid lung zone"] = band(lung, b1, b2)
    shapes[f"{side} lower lung zone"] = band(lung, b2, bottom)
    clav = thorax.clavicles[side]
    clav_v = float(np.interp(0.45, np.abs(clav[:, 0] - mid), clav[:, 1]))
    shapes[f"{side} apical zone"] = band(lung, top, max(clav_v, top + 0.12))
    hu, hv = thorax.hilum[side]
    shapes[f"{side} hilar structures"] = rect(hu - sign * 0.11, hv - 0.17, hu + sign * 0.15,
                                              hv + 0.15)
    cu, cv = thorax.cp[side]
    shapes[f"{side} costophrenic angle"] = rect(cu - sign * 0.24, cv - 0.24, cu + sign * 0.04,
                                                cv + 0.04)
    pu, pv = thorax.cardiophrenic[side]
    shapes[f"{side} cardiophrenic angle"] = rect(pu - sign * 0.07, pv - 0.17, pu + sign * 0.17,
                                                 pv + 0.05)
    hemi = thorax.hemidiaphragm[side]
    shapes[f"{side} hemidiaphragm"] = np.concatenate([hemi, hemi + (0, 0.07)])
    shapes[f"{side} clavicle"] = np.concatenate(
        [clav + (0, -anatomy.clavicle[2] / 2), clav + (0, anatomy.clavicle[2] / 2)])

  trachea = thorax.trachea[thorax.trachea[:, 1] >= -0.35]
  half = anatomy.trachea_width * 0.8
  shapes["trachea"] = np.concatenate([trachea - (half, 0), trachea + (half, 0)])
  shapes["carina"] = _around(thorax.carina, 0.08, 0.07)
  bottom = max(thorax.cp["right"][1], thorax.cp["left"][1])
  spine_half = anatomy.spine_width * 0.62
  shapes["spine"] = rect(mid - spine_half, -0.3, mid + spine_half, bottom + 0.1)
  knob_u, knob_v, knob_r = thorax.knob
  shapes["aortic arch"] = rect(mid - 0.03, knob_v - knob_r - 0.05, knob_u + 0.01,
                               knob_v + knob_r + 0.03)
  med = thorax.mediastinum
  hr, hl, htop, hbot = thorax.heart_extent
  shapes["mediastinum"] = band(med, 0.02, hbot)
  shapes["upper mediastinum"] = band(med, 0.02, htop)
  right_border = float(np.interp(0.55 * htop, med[:_half(med), 1], med[:_half(med), 0]))
  shapes["svc"] = rect(right_border - 0.015, 0.22, right_border + 0.09, htop + 0.06)
  shapes["cardiac silhouette"] = rect(hr, htop, hl, hbot)
  shapes["left cardiac silhouette"] = rect(mid, htop, hl, hbot)
  shapes["right cardiac silhouette"] = rect(hr, htop, mid, hbot)
  shapes["cavoatrial junction"] = _around((right_border + 0.02, htop + 0.04), 0.07, 0.07)
  shapes["right atrium"] = rect(hr, htop + 0.08, mid - 0.03, hbot)
  shapes["descending aorta"] = rect(mid + 0.0, knob_v, mid + 0.13, hbot)
  dome_v = min(thorax.dome["right"][1], thorax.dome["left"][1])
  ru, lu = thorax.cp["right"][0], thorax.cp["left"][0]
  shapes["abdomen"] = rect(ru, dome_v, lu, bottom + 0.45)
  shapes["right upper abdomen"] = rect(ru, dome_v, mid, bottom + 0.45)
  shapes["left upper abdomen"] = rect(mid, dome_v, lu, bottom + 0.45)
  return {name: acq.box_of(shapes[name]) for name in REGION_NAMES}


def _half(poly: np.ndarray) -> int:
  """Number of points of the first (right-hand) border of a two-border outline."""
  return len(poly) // 2
