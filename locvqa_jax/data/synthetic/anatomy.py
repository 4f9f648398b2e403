"""One synthetic patient's anatomy: the shape parameters that stay fixed across their studies.

All lengths are in thorax units in a body frame: ``u`` grows toward the image's right (the
patient's left), ``v`` grows downward, ``u = 0`` is the midline and ``v = 0`` the top of the lung
apices; 1.0 is about the distance from the midline to a lung's lateral edge. How a study projects
this body onto the detector (rotation, magnification, inspiration) is ``acquisition.py``'s job, and
``geometry.py`` turns both into outlines.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from locvqa_jax.data.synthetic.knobs import RenderKnobs

SIDES = ("right", "left")
# Sign of the patient's side in the body frame: patient right is the image's left (u < 0).
SIDE_SIGN = {"right": -1.0, "left": 1.0}


@dataclasses.dataclass(frozen=True)
class Anatomy:
  """Per-patient shape parameters (thorax units; see the module docstring for the frame).

  Attributes:
    seed: per-patient seed; textures of findings are drawn from it so a finding that persists
      across studies keeps its shape.
    sex: 'M' or 'F' (female patients get breast shadows over the lower zones).
    lung_width: (right, left) distance from the midline to each lung's lateral edge.
    cp_level: (right, left) height of the costophrenic angles at reference inspiration.
    dome_rise: (right, left) how far each hemidiaphragm dome rises above its costophrenic angle.
    apex_u: distance from the midline of the top of each apex.
    upper_mediastinum: (right, left) half-width of the upper mediastinum.
    knob: (v, radius) of the aortic knob bulging from the left of the upper mediastinum.
    heart_half_width: (right, left) maximal extent of the heart from the midline.
    heart_top: height where the heart's borders leave the vascular pedicle.
    hilum_v: (right, left) height of the hila (the left one is usually higher).
    carina_v: height of the carina.
    trachea_width: width of the tracheal air column.
    spine_width: width of the vertebral bodies.
    rib_first: height (at the spine) of the first posterior rib below the apex.
    rib_spacing: vertical spacing of the upper posterior ribs.
    rib_growth: relative growth of the rib spacing per rib downward.
    rib_thickness: vertical thickness of a rib.
    rib_curve: (a1, a3): posterior rib centreline ``v = p_k - a1 x + a3 x^3`` with x = |u|.
    clavicle: (medial v, lateral v, thickness).
    body_half_width: half-width of the soft-tissue outline at the chest.
    soft_tissue: soft-tissue density scale (body habitus).
    bone_density: bone density scale.
    gastric_bubble: (u, radius) of the gas under the left hemidiaphragm (radius 0: none).
    vessels: [N, 8] float32 pulmonary vessels, each a bent segment (u0, v0, u_mid, v_mid, u1,
      v1, width, side sign) with coordinates relative to the hilum of its side.
  """

  seed: int
  sex: str
  lung_width: tuple[float, float]
  cp_level: tuple[float, float]
  dome_rise: tuple[float, float]
  apex_u: float
  upper_mediastinum: tuple[float, float]
  knob: tuple[float, float]
  heart_half_width: tuple[float, float]
  heart_top: float
  hilum_v: tuple[float, float]
  carina_v: float
  trachea_width: float
  spine_width: float
  rib_first: float
  rib_spacing: float
  rib_growth: float
  rib_thickness: float
  rib_curve: tuple[float, float]
  clavicle: tuple[float, float, float]
  body_half_width: float
  soft_tissue: float
  bone_density: float
  gastric_bubble: tuple[float, float]
  vessels: np.ndarray = dataclasses.field(compare=False, repr=False)

  def side_value(self, pair: tuple[float, float], side: str) -> float:
    """Picks the ``side`` ('right' or 'left') entry of a (right, left) pair."""
    return pair[SIDES.index(side)]


def _vessel_tree(rng: np.random.Generator, hilum: tuple[float, float], sign: float,
                 depth: int) -> list[tuple[float, ...]]:
  """Branching pulmonary vessels from one hilum: [(u0, v0, um, vm, u1, v1, width, sign), ...]."""
  segments = []
  # Trunk directions, in degrees below the outward horizontal: up-out, out, down-out, down.
  stack = [(hilum[0], hilum[1], np.deg2rad(a + rng.normal(0, 6)), length, 0.042, 0)
           for a, length in ((-75, 0.28), (-40, 0.26), (0, 0.25), (35, 0.3), (65, 0.34))]
  while stack:
    u, v, ang, length, width, level = stack.pop()
    u1 = u + sign * np.cos(ang) * length
    v1 = v + np.sin(ang) * length
    # A jittered midpoint makes vessels gently tortuous rather than straight.
    bend = rng.normal(0, 0.12) * length
    um = (u + u1) / 2 - sign * np.sin(ang) * bend
    vm = (v + v1) / 2 + np.cos(ang) * bend
    segments.append((u, v, um, vm, u1, v1, width, sign))
    if level + 1 < depth:
      for turn in (-1, 1):
        child = ang + turn * np.deg2rad(rng.uniform(14, 32))
        stack.append((u1, v1, child, length * rng.uniform(0.62, 0.8), width * 0.62, level + 1))
  return segments


def sample_anatomy(rng: np.random.Generator, knobs: RenderKnobs) -> Anatomy:
  """Draws one patient's anatomy; fixed across that patient's studies.

  Args:
    rng: the patient's generator (the only source of randomness).
    knobs: ``anatomy_variation`` scales how different patients look.

  Returns:
    An ``Anatomy``.
  """
  k = knobs.anatomy_variation

  def jit(mean: float, sd: float) -> float:
    return float(mean + k * sd * np.clip(rng.standard_normal(), -2.5, 2.5))

  seed = int(rng.integers(0, 2**31 - 1))
  sex = "F" if rng.random() < 0.5 else "M"
  width_r = jit(1.0, 0.035)
  width_l = jit(0.97, 0.035)
  cp_r = jit(1.78, 0.11)
  cp_l = cp_r + jit(0.04, 0.03)
  rise_r = jit(0.34, 0.06)
  rise_l = jit(0.30, 0.06)
  heart_r = jit(0.30, 0.035)
  heart_l = jit(0.56, 0.05)
  # A normal heart stays below a cardiothoracic ratio of about 0.46 on PA.
  excess = (heart_r + heart_l) / (0.46 * (width_r + width_l))
  if excess > 1:
    heart_r, heart_l = heart_r / excess, heart_l / excess
  hilum_r = jit(0.80, 0.04)
  hilum_l = hilum_r - abs(jit(0.05, 0.02))
  bubble_r = max(0.0, jit(0.11, 0.04)) if rng.random() < 0.8 else 0.0
  vessel_rng = np.random.default_rng(seed)
  vessels = []
  for sign in (-1.0, 1.0):
    vessels += _vessel_tree(vessel_rng, (0.0, 0.0), sign, depth=5)
  return Anatomy(
      seed=seed,
      sex=sex,
      lung_width=(width_r, width_l),
      cp_level=(cp_r, cp_l),
      dome_rise=(rise_r, rise_l),
      apex_u=jit(0.42, 0.03),
      upper_mediastinum=(jit(0.12, 0.012), jit(0.13, 0.012)),
      knob=(jit(0.42, 0.03), jit(0.055, 0.01)),
      heart_half_width=(heart_r, heart_l),
      heart_top=jit(0.78, 0.04),
      hilum_v=(hilum_r, hilum_l),
      carina_v=jit(0.56, 0.03),
      trachea_width=jit(0.075, 0.008),
      spine_width=jit(0.17, 0.012),
      rib_first=jit(0.0, 0.02),
      rib_spacing=jit(0.150, 0.01),
      rib_growth=jit(0.05, 0.01),
      rib_thickness=jit(0.085, 0.008),
      rib_curve=(jit(0.20, 0.03), jit(0.42, 0.05)),
      clavicle=(jit(0.26, 0.03), jit(-0.04, 0.04), jit(0.07, 0.006)),
      body_half_width=jit(1.24, 0.06),
      soft_tissue=jit(1.0, 0.08),
      bone_density=jit(1.0, 0.08),
      gastric_bubble=(jit(0.45, 0.06), bubble_r),
      vessels=np.asarray(vessels, np.float32),
  )
