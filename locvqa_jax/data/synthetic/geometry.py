"""Outlines of the frontal chest in the body frame, for one patient in one study.

Combines the patient's ``Anatomy`` with the study's ``Acquisition`` (inspiration, AP heart
magnification, obliquity) and with the few findings that move anatomy (cardiomegaly widens the
heart, a large effusion pushes the mediastinum away). The renderer draws these outlines and the
region boxes are computed from the very same outlines, so boxes and pixels agree.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from locvqa_jax.data.synthetic.acquisition import Acquisition
from locvqa_jax.data.synthetic.anatomy import SIDE_SIGN, SIDES, Anatomy

_N = 48  # samples per outline edge


@dataclasses.dataclass(frozen=True)
class Modifiers:
  """Anatomy changes caused by findings.

  Attributes:
    heart_scale: width factor of the heart (cardiomegaly).
    mediastinal_shift: sideways shift of the mediastinum in thorax units (+ toward image right).
    collapse: side -> 0..1 how far a pneumothorax has collapsed that lung toward its hilum.
  """

  heart_scale: float = 1.0
  mediastinal_shift: float = 0.0
  collapse: tuple[tuple[str, float], ...] = ()


@dataclasses.dataclass(frozen=True)
class Thorax:
  """Frontal outlines, each [N, 2] (u, v) in the body frame unless stated.

  Attributes:
    midline: u of the mediastinum's centre line (obliquity and shift included).
    lungs: side -> lung outline (closed polygon).
    aerated: side -> outline of the aerated lung (smaller than ``lungs`` under a pneumothorax).
    heart: heart outline (closed polygon).
    mediastinum: outline of everything between the lungs above the diaphragm.
    cp: side -> (u, v) of the costophrenic angle.
    cardiophrenic: side -> (u, v) where the heart border meets the diaphragm.
    dome: side -> (u, v) top of the hemidiaphragm.
    hemidiaphragm: side -> polyline of the diaphragm surface from lateral to medial.
    hilum: side -> (u, v) centre of the hilum.
    carina: (u, v).
    trachea: polyline from the neck to the carina.
    bronchi: side -> polyline from the carina to the hilum.
    clavicles: side -> centreline of the clavicle, medial end first.
    knob: (u of the knob's outer edge, v, radius) of the aortic knob.
    heart_extent: (right u, left u, top v, bottom v) of the heart.
    zones: side -> (v_top, v_upper_mid, v_mid_lower, v_bottom) zone boundaries.
  """

  midline: float
  lungs: dict
  aerated: dict
  heart: np.ndarray
  mediastinum: np.ndarray
  cp: dict
  cardiophrenic: dict
  dome: dict
  hemidiaphragm: dict
  hilum: dict
  carina: tuple[float, float]
  trachea: np.ndarray
  bronchi: dict
  clavicles: dict
  knob: tuple[float, float, float]
  heart_extent: tuple[float, float, float, float]
  zones: dict


def _lateral_edge(t: np.ndarray, apex: float, width: float) -> np.ndarray:
  """Lateral lung edge distance from the midline at relative height t in [0, 1]."""
  rise = np.sin(np.clip(t / 0.85, 0, 1) * np.pi / 2) ** 0.55
  tuck = 0.03 * np.clip((t - 0.85) / 0.15, 0, 1)
  return apex + (width - apex) * rise - tuck * width


def _bump(t: np.ndarray, peak: float, rise: float, end: float = 1.25) -> np.ndarray:
  """0 at t=0, 1 at t=peak, falling towards t=end; the profile of a heart border.

  ``rise`` > 1 makes the upper border slope gently (left ventricle), < 1 makes it round.
  """
  up = np.sin(np.pi / 2 * np.clip(t / peak, 0, 1)) ** rise
  down = np.sqrt(np.clip(1 - ((t - peak) / (end - peak)) ** 2, 0, 1))
  return np.where(t < peak, up, down)


def _diaphragm(x: np.ndarray, dome_v: float, cp_v: float, width: float) -> np.ndarray:
  """Height of a hemidiaphragm at distance x from the midline."""
  x_dome = 0.48 * width
  lateral = dome_v + (cp_v - dome_v) * np.clip((x - x_dome) / (width - x_dome), 0, 1) ** 2
  medial = dome_v + 0.1 * np.clip((x_dome - x) / x_dome, 0, 1) ** 2
  return np.where(x >= x_dome, lateral, medial)


def build_thorax(anatomy: Anatomy, acq: Acquisition, mods: Modifiers = Modifiers()) -> Thorax:
  """Outlines of one frontal study (see ``Thorax``)."""
  mag = acq.heart_magnification
  midline = acq.obliquity + mods.mediastinal_shift
  heart_top = anatomy.heart_top - 0.04 * (mag - 1) / 0.15
  # The heart sits on the diaphragm; its lower edge hides in the equally dense abdomen.
  base_v = (sum(anatomy.cp_level) - sum(anatomy.dome_rise)) / 2 + acq.diaphragm_shift + 0.1
  heart_w = {s: anatomy.side_value(anatomy.heart_half_width, s) * mag * mods.heart_scale
             for s in SIDES}
  upper_w = {s: anatomy.side_value(anatomy.upper_mediastinum, s) * (1 + 0.6 * (mag - 1))
             for s in SIDES}
  knob_v, knob_r = anatomy.knob[0], anatomy.knob[1] * (1 + 0.5 * (mag - 1))
  # Right heart border peaks low (right atrium); left border peaks lower still (apex).
  peaks = {"right": (0.6, 0.8), "left": (0.72, 1.25)}

  def medial(side: str, v: np.ndarray) -> np.ndarray:
    """Distance from the midline to the mediastinal or cardiac border at height v."""
    upper = upper_w[side] + 0.05 * np.clip((v - 0.3) / 0.5, 0, 1)
    if side == "left":
      upper = upper + knob_r * np.exp(-((v - knob_v) / 0.095) ** 2)
      upper = upper + 0.035 * np.exp(-((v - knob_v - 0.22) / 0.06) ** 2)  # pulmonary artery
    t = (v - heart_top) / (base_v - heart_top)
    heart = upper_w[side] + (heart_w[side] - upper_w[side]) * _bump(t, *peaks[side])
    heart = np.where(t > 0, heart, 0.0)
    return np.maximum(upper, heart)

  lungs, cp, dome, hemi, cardio, zones, hilum = {}, {}, {}, {}, {}, {}, {}
  for side in SIDES:
    sign = SIDE_SIGN[side]
    width = anatomy.side_value(anatomy.lung_width, side)
    cp_v = anatomy.side_value(anatomy.cp_level, side) + acq.diaphragm_shift
    dome_v = cp_v - anatomy.side_value(anatomy.dome_rise, side)
    apex = anatomy.apex_u
    v = np.linspace(0, cp_v, _N)
    lateral = _lateral_edge(v / cp_v, apex, width)
    # Medial base: where the mediastinal border meets the diaphragm.
    x_mb = float(medial(side, np.array(dome_v + 0.05)))
    v_mb = float(_diaphragm(np.array(x_mb), dome_v, cp_v, width))
    xd = np.linspace(lateral[-1], x_mb, _N)
    vd = _diaphragm(xd, dome_v, cp_v, width)
    vm = np.linspace(v_mb, 0, _N)
    apex_round = np.sin(np.clip(vm / 0.28, 0, 1) * np.pi / 2) ** 0.6
    xm = np.maximum(medial(side, vm), apex - (apex - medial(side, vm)) * apex_round)
    xs = np.concatenate([lateral, xd[1:], xm[1:]])
    vs = np.concatenate([v, vd[1:], vm[1:]])
    # Lateral parts belong to the ribcage, which obliquity does not move.
    lungs[side] = np.stack([sign * xs + midline * np.clip(1 - xs / 0.9, 0, 1), vs], -1)
    cp[side] = (sign * lateral[-1], cp_v)
    x_dome = 0.48 * width
    dome[side] = (sign * x_dome, dome_v)
    hemi[side] = np.stack([sign * xd + midline * np.clip(1 - xd / 0.9, 0, 1), vd], -1)
    cardio[side] = (midline + sign * x_mb, v_mb)
    bottom = cp_v
    top = float(vs.min())
    zones[side] = (top, top + (bottom - top) / 3, top + 2 * (bottom - top) / 3, bottom)
    hv = anatomy.side_value(anatomy.hilum_v, side) + 0.3 * acq.diaphragm_shift
    hilum[side] = (midline + sign * (float(medial(side, np.array(hv))) + 0.1), hv)

  # Pneumothorax: the aerated lung shrinks toward the hilum, most at the apex.
  aerated = dict(lungs)
  for side, amount in mods.collapse:
    poly = lungs[side]
    hu, hv = hilum[side]
    top, bottom = zones[side][0], zones[side][3]
    # Upright patients collect the air at the apex: the top collapses most, the base barely.
    weight = np.clip((bottom - poly[:, 1]) / (bottom - top), 0, 1) ** 3
    f = 1 - amount * weight
    aerated[side] = np.stack([hu + (poly[:, 0] - hu) * f, hv + (poly[:, 1] - hv) * f], -1)

  tv = np.linspace(heart_top, base_v, _N)
  right = midline - medial("right", tv)
  left = midline + medial("left", tv)
  heart = np.concatenate([np.stack([right, tv], -1), np.stack([left[::-1], tv[::-1]], -1)])
  mv = np.linspace(-0.6, base_v, _N)
  mediastinum = np.concatenate([
      np.stack([midline - medial("right", mv), mv], -1),
      np.stack([midline + medial("left", mv[::-1]), mv[::-1]], -1)])
  extent = (float(right.min()), float(left.max()), heart_top,
            max(cardio["right"][1], cardio["left"][1]))

  carina = (midline + 0.01, anatomy.carina_v + 0.2 * acq.diaphragm_shift)
  ty = np.linspace(-0.7, carina[1], 16)
  # The aortic knob nudges the trachea slightly to the patient's right.
  tx = midline + 0.01 - 0.02 * np.exp(-((ty - knob_v) / 0.15) ** 2)
  trachea = np.stack([tx, ty], -1)
  bronchi = {}
  for side in SIDES:
    hu, hv = hilum[side]
    mid = (carina[0] + 0.55 * (hu - carina[0]), carina[1] + 0.45 * (hv - carina[1]))
    bronchi[side] = np.array([carina, mid, (hu, hv)])

  clav_med, clav_lat, _ = anatomy.clavicle
  clavicles = {}
  for side in SIDES:
    sign = SIDE_SIGN[side]
    t = np.linspace(0, 1, 24)
    cu = midline * (1 - t) + sign * (0.07 + 1.0 * t)
    cv = (clav_med - acq.clavicle_lift) * (1 - t) + (clav_lat - 1.2 * acq.clavicle_lift) * t
    cv = cv - 0.035 * np.sin(np.pi * t) + 0.02 * np.sin(2 * np.pi * t)
    clavicles[side] = np.stack([cu, cv], -1)
  return Thorax(midline=midline, lungs=lungs, aerated=aerated, heart=heart,
                mediastinum=mediastinum, cp=cp, cardiophrenic=cardio, dome=dome,
                hemidiaphragm=hemi, hilum=hilum, carina=carina, trachea=trachea, bronchi=bronchi,
                clavicles=clavicles, heart_extent=extent, zones=zones,
                knob=(midline + float(medial("left", np.array(knob_v))), knob_v, knob_r))
