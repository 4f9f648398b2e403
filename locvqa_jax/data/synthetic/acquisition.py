"""How one study projects a patient onto the detector: view, framing, inspiration, exposure.

Everything here may differ between two studies of the same patient without any change of
disease: a follow-up whose only differences are these must be labelled "nothing has changed".
The projection is a similarity transform from the body frame (thorax units, see ``anatomy.py``)
to image pixels: ``pixel = centre + scale * R(angle) @ (body - anchor)``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from locvqa_jax.data.synthetic.knobs import RenderKnobs

VIEWS = ("PA", "AP", "LATERAL")
# Field of view in thorax units (neck to upper abdomen; 14 x 17 inch detector on an adult).
_FOV_HEIGHT = 2.7
_FOV_WIDTH = 2.45
# Body point that lands at the image centre by default (mid-chest).
_ANCHOR = (0.0, 0.9)


@dataclasses.dataclass(frozen=True)
class Acquisition:
  """One study's acquisition.

  Attributes:
    view: 'PA', 'AP' or 'LATERAL'.
    rows, cols: output image height and width in pixels (the longer one is the image size).
    scale: pixels per thorax unit.
    centre: (x, y) pixel where the anchor body point lands.
    anchor: (u, v) body point placed at ``centre``.
    angle: in-plane rotation in radians (positive turns the patient clockwise on screen).
    diaphragm_shift: how much lower (positive) or higher the diaphragm sits than the patient's
      reference inspiration, thorax units.
    heart_magnification: width factor of the heart and mediastinum (1 on PA, 1.1-1.2 on AP).
    obliquity: sideways offset of the mediastinum and spine against the ribcage (rotation of the
      patient about the vertical axis), thorax units.
    clavicle_lift: how much higher the clavicles project (semi-erect AP, lordotic tilt).
    exposure: penetration; higher makes the whole image brighter before equalisation.
    gamma: display contrast exponent.
    noise: noise standard deviation before equalisation.
    blur: Gaussian sigma of detector unsharpness, pixels.
    edge_enhance: unsharp-mask amount.
    equalize: histogram equalisation blend.
    markers: ((text, x of the centre, y of the top, height_px), ...) burnt-in labels.
    collimation: ((edge, width_px), ...) with edge in 'top', 'bottom', 'left', 'right'.
  """

  view: str
  rows: int
  cols: int
  scale: float
  centre: tuple[float, float]
  anchor: tuple[float, float]
  angle: float
  diaphragm_shift: float
  heart_magnification: float
  obliquity: float
  clavicle_lift: float
  exposure: float
  gamma: float
  noise: float
  blur: float
  edge_enhance: float
  equalize: float
  markers: tuple[tuple[str, float, float, float], ...]
  collimation: tuple[tuple[str, float], ...]

  def to_pixels(self, points: np.ndarray) -> np.ndarray:
    """Body frame to pixels. points: [..., 2] (u, v) -> [..., 2] (x, y) float."""
    points = np.asarray(points, np.float64)
    c, s = np.cos(self.angle), np.sin(self.angle)
    du = points[..., 0] - self.anchor[0]
    dv = points[..., 1] - self.anchor[1]
    x = self.centre[0] + self.scale * (c * du - s * dv)
    y = self.centre[1] + self.scale * (s * du + c * dv)
    return np.stack([x, y], axis=-1)

  def grid_shape(self, factor: int = 1) -> tuple[int, int]:
    """Shape of the image reduced by an integer ``factor`` (rounded up)."""
    return -(-self.rows // factor), -(-self.cols // factor)

  def body_grid(self, factor: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Body coordinates of pixel centres of the image reduced by ``factor``.

    Returns:
      (u, v), each [ceil(rows / factor), ceil(cols / factor)] float32.
    """
    c, s = np.cos(self.angle), np.sin(self.angle)
    rows, cols = self.grid_shape(factor)
    y = ((np.arange(rows, dtype=np.float32) + 0.5) * factor)[:, None]
    x = ((np.arange(cols, dtype=np.float32) + 0.5) * factor)[None, :]
    dx = (x - self.centre[0]) / self.scale
    dy = (y - self.centre[1]) / self.scale
    u = self.anchor[0] + c * dx + s * dy
    v = self.anchor[1] - s * dx + c * dy
    return u.astype(np.float32), v.astype(np.float32)

  def box_of(self, points: np.ndarray) -> tuple[float, float, float, float]:
    """Pixel box (x1, y1, x2, y2) around body-frame points [N, 2] after projection."""
    px = self.to_pixels(np.asarray(points).reshape(-1, 2))
    return (float(px[:, 0].min()), float(px[:, 1].min()),
            float(px[:, 0].max()), float(px[:, 1].max()))


def _image_shape(rng: np.random.Generator, image_size: int, landscape_prob: float
                 ) -> tuple[int, int]:
  short = int(round(image_size * rng.uniform(0.8, 0.95)))
  if rng.random() < landscape_prob:
    return short, image_size
  return image_size, short


def sample_acquisition(rng: np.random.Generator, knobs: RenderKnobs, view: str,
                       image_size: int) -> Acquisition:
  """Draws one study's acquisition.

  Args:
    rng: the study's generator.
    knobs: jitter sizes (``rotation_deg``, ``shift_frac``, ``scale_jitter``, ...).
    view: 'PA', 'AP' or 'LATERAL'. AP is the portable semi-erect look: heart magnified by
      ``knobs.ap_heart_magnification``, shallower inspiration, more rotation, a PORTABLE label.
    image_size: longest side of the output in pixels, 64..4096.

  Returns:
    An ``Acquisition`` with ``rows``/``cols`` whose maximum is ``image_size``.
  """
  if view not in VIEWS:
    raise ValueError(f"sample_acquisition: view must be one of {VIEWS}, got {view!r}")
  if not 64 <= int(image_size) <= 4096:
    raise ValueError(f"sample_acquisition: image_size must be in [64, 4096], got {image_size!r}")
  image_size = int(image_size)
  ap = view == "AP"
  landscape = knobs.landscape_prob_ap if ap else knobs.landscape_prob_pa
  rows, cols = _image_shape(rng, image_size, landscape if view != "LATERAL" else 0.0)
  sd_scale = 1.5 if ap else 1.0
  angle = np.deg2rad(np.clip(rng.normal(0, knobs.rotation_deg * sd_scale), -8, 8))
  # A lateral chest is narrower front to back than side to side: frame it tighter.
  fov_w = _FOV_WIDTH * (0.9 if view == "LATERAL" else 1.0)
  scale = min(rows / _FOV_HEIGHT, cols / fov_w)
  scale *= float(np.exp(np.clip(rng.normal(0, knobs.scale_jitter), -0.25, 0.25)))
  if ap:
    scale *= 0.95  # portable films are framed a little wider
  short = min(rows, cols)
  shift = np.clip(rng.normal(0, knobs.shift_frac, 2), -0.08, 0.08) * short
  centre = (cols / 2 + shift[0], rows / 2 + shift[1] + (0.02 * rows if ap else 0.0))
  diaphragm = rng.normal(0, knobs.inspiration_jitter) - (knobs.ap_inspiration_loss if ap else 0)
  low, high = knobs.ap_heart_magnification
  heart_mag = float(rng.uniform(low, high)) if ap else 1.0
  obliquity = rng.normal(0, knobs.obliquity * sd_scale)
  markers = []
  if view != "LATERAL":
    height = 0.045 * short
    if rng.random() < knobs.marker_prob:
      # The side marker sits on the patient's left, i.e. the image's right, near the top.
      markers.append(("L", cols * rng.uniform(0.82, 0.93), rows * rng.uniform(0.04, 0.14),
                      height))
    if ap and rng.random() < knobs.marker_prob:
      markers.append(("PORTABLE", cols * rng.uniform(0.2, 0.5), rows * rng.uniform(0.02, 0.07),
                      height * 0.8))
  collimation = tuple((edge, float(rng.uniform(0.01, 0.06) * short))
                      for edge in ("top", "bottom", "left", "right")
                      if rng.random() < knobs.collimation_prob)
  return Acquisition(
      view=view,
      rows=rows,
      cols=cols,
      scale=float(scale),
      centre=(float(centre[0]), float(centre[1])),
      anchor=_ANCHOR,
      angle=float(angle),
      diaphragm_shift=float(np.clip(diaphragm, -0.45, 0.3)),
      heart_magnification=heart_mag,
      obliquity=float(np.clip(obliquity, -0.12, 0.12)),
      clavicle_lift=float(rng.uniform(0.05, 0.14)) if ap else float(rng.uniform(-0.02, 0.03)),
      exposure=float(np.exp(rng.normal(0, knobs.exposure_jitter))),
      gamma=float(np.exp(rng.normal(0, knobs.contrast_jitter))),
      noise=float(knobs.noise * rng.uniform(0.7, 1.3) * (1.3 if ap else 1.0)),
      blur=float(knobs.blur_px * image_size / 512),
      edge_enhance=float(knobs.edge_enhance),
      equalize=float(knobs.equalize),
      markers=tuple(markers),
      collimation=collimation,
  )
