"""Every "how hard / how it looks" setting of the synthetic radiograph renderer, in one place.

A reader changes the difficulty of the synthetic data by picking a preset from ``RENDER_PRESETS``
or by ``dataclasses.replace``-ing a few fields; nothing else in the renderer holds a tunable number
that changes what a model has to learn. Lengths are in "thorax units": 1.0 is the distance from the
midline to the lateral edge of a lung at its widest (about 14 cm in an adult).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class RenderKnobs:
  """Difficulty and appearance settings for ``render``; see docs/synthetic_images.md.

  Attributes:
    finding_contrast: multiplies the density every finding adds or removes; 1.0 is a textbook
      picture, below 1 findings blend into the anatomy.
    severity_floor: density of a finding at severity 0 as a fraction of its density at
      severity 1; a low floor makes minimal/mild findings subtle, a high one keeps them obvious.
    finding_texture: 0..1, how much of a finding's density is broken up by patchy noise (0 gives
      smooth blobs, 1 gives mottled airspace disease).
    anatomy_variation: 0..1 scale of between-patient variation of body, lung and heart shape.
    rotation_deg: standard deviation of in-plane rotation of a study, in degrees (AP studies get
      1.5x this).
    shift_frac: standard deviation of the patient's offset in the field, as a fraction of the
      image's shorter side.
    scale_jitter: standard deviation of the relative magnification between studies.
    inspiration_jitter: standard deviation of diaphragm height between studies, thorax units
      (AP studies are additionally ``ap_inspiration_loss`` shallower).
    ap_inspiration_loss: how much higher the diaphragm sits on AP studies, thorax units.
    ap_heart_magnification: (low, high) range of the heart and mediastinum width factor on AP.
    obliquity: standard deviation of the mediastinum's sideways offset from patient rotation,
      thorax units (AP studies get 1.5x this).
    exposure_jitter: standard deviation of the log exposure (overall penetration) of a study.
    contrast_jitter: standard deviation of the log contrast (gamma) of a study.
    noise: standard deviation of quantum-like noise before equalisation, in display units 0..1.
    blur_px: detector unsharpness, Gaussian sigma in pixels of a 512 image (scales with size).
    edge_enhance: strength of the unsharp-mask processing that makes edges crisp like
      post-processed clinical images.
    equalize: 0..1 blend between a linear window (0) and full histogram equalisation (1).
    vessel_contrast: density of the pulmonary vascular markings.
    rib_contrast: density of ribs and clavicles relative to a typical adult.
    parenchyma_texture: amplitude of the fine mottled background texture inside the lungs.
    marker_prob: probability that a frontal study carries a side marker ("L"); AP studies also
      carry a "PORTABLE" label with probability ``marker_prob``.
    collimation_prob: probability of a visible collimator/detector edge on each of the 4 sides.
    landscape_prob_pa: probability that a PA image is landscape (wider than tall).
    landscape_prob_ap: probability that an AP image is landscape.
    device_contrast: density of tubes, lines and the pacemaker.
  """

  finding_contrast: float = 1.0
  severity_floor: float = 0.35
  finding_texture: float = 0.5
  anatomy_variation: float = 1.0
  rotation_deg: float = 2.5
  shift_frac: float = 0.03
  scale_jitter: float = 0.05
  inspiration_jitter: float = 0.06
  ap_inspiration_loss: float = 0.15
  ap_heart_magnification: tuple[float, float] = (1.10, 1.20)
  obliquity: float = 0.025
  exposure_jitter: float = 0.12
  contrast_jitter: float = 0.10
  noise: float = 0.01
  blur_px: float = 0.8
  edge_enhance: float = 0.35
  equalize: float = 0.45
  vessel_contrast: float = 1.0
  rib_contrast: float = 1.0
  parenchyma_texture: float = 1.0
  marker_prob: float = 0.8
  collimation_prob: float = 0.25
  landscape_prob_pa: float = 0.1
  landscape_prob_ap: float = 0.45
  device_contrast: float = 1.0

  def __post_init__(self):
    for f in dataclasses.fields(self):
      value = getattr(self, f.name)
      values = value if isinstance(value, tuple) else (value,)
      for x in values:
        if not isinstance(x, (int, float)) or x < 0:
          raise ValueError(f"RenderKnobs.{f.name} must be a non-negative number, got {value!r}")
    for name in ("finding_texture", "anatomy_variation", "equalize", "marker_prob",
                 "collimation_prob", "landscape_prob_pa", "landscape_prob_ap", "severity_floor"):
      if getattr(self, name) > 1:
        raise ValueError(f"RenderKnobs.{name} must lie in [0, 1], got {getattr(self, name)!r}")
    low, high = self.ap_heart_magnification
    if not 1.0 <= low <= high:
      raise ValueError("RenderKnobs.ap_heart_magnification must be (low, high) with "
                       f"1 <= low <= high, got {self.ap_heart_magnification!r}")


RENDER_PRESETS: dict[str, RenderKnobs] = {
    # CPU quick start: findings obvious at any severity, studies of one patient nearly aligned.
    "easy": RenderKnobs(
        finding_contrast=1.7,
        severity_floor=0.6,
        finding_texture=0.3,
        anatomy_variation=0.6,
        rotation_deg=1.0,
        shift_frac=0.012,
        scale_jitter=0.02,
        inspiration_jitter=0.03,
        ap_inspiration_loss=0.08,
        obliquity=0.01,
        exposure_jitter=0.05,
        contrast_jitter=0.04,
        noise=0.005,
        blur_px=0.6,
        edge_enhance=0.25,
        equalize=0.35,
        vessel_contrast=1.0,
        rib_contrast=1.0,
        parenchyma_texture=0.8,
        marker_prob=0.5,
        collimation_prob=0.1,
    ),
    # Looks like a radiograph at a glance; minimal findings are subtle; follow-ups differ by
    # rotation, shift, magnification and inspiration as much as real ones do.
    "realistic": RenderKnobs(
        finding_contrast=0.85,
        severity_floor=0.2,
        finding_texture=0.7,
        anatomy_variation=1.0,
        rotation_deg=3.0,
        shift_frac=0.04,
        scale_jitter=0.06,
        inspiration_jitter=0.08,
        ap_inspiration_loss=0.15,
        obliquity=0.03,
        exposure_jitter=0.15,
        contrast_jitter=0.12,
        noise=0.012,
        blur_px=0.9,
        edge_enhance=0.35,
        equalize=0.45,
        vessel_contrast=1.0,
        rib_contrast=1.0,
        parenchyma_texture=1.0,
        marker_prob=0.85,
        collimation_prob=0.3,
    ),
}
