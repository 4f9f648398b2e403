"""Rasterisation helpers of the renderer: soft masks, lines, blurs and body-fixed textures.

Shapes are filled by PIL (C speed) in pixel space and softened with a Gaussian; wide blurs run on
a reduced copy. Textures live on a lattice in the body frame and are sampled at each pixel's body
coordinates, so a finding keeps its texture when a follow-up is rotated or magnified.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

Shape = tuple[int, int]


def _points(pts_px: np.ndarray) -> list[float]:
  """Flat [x0, y0, x1, y1, ...] list, the fastest form PIL accepts."""
  return np.asarray(pts_px, np.float64).ravel().tolist()


def bezier(p0, p1, p2, n: int = 24) -> np.ndarray:
  """Quadratic Bezier curve through control points (u, v): [n, 2]."""
  t = np.linspace(0, 1, n)[:, None]
  p0, p1, p2 = (np.asarray(p, np.float64) for p in (p0, p1, p2))
  return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2


def tube_outline(pts: np.ndarray, width: float | np.ndarray) -> np.ndarray:
  """Closed outline [2N, 2] of a band of ``width`` (scalar or per point) around a polyline.

  Filling this outline gives clean tubes where wide PIL lines would show stair steps.
  """
  pts = np.asarray(pts, np.float64)
  tangent = np.gradient(pts, axis=0)
  tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
  normal = np.stack([-tangent[:, 1], tangent[:, 0]], -1) * (np.asarray(width)[..., None] / 2
                                                             if np.ndim(width) else width / 2)
  return np.concatenate([pts + normal, (pts - normal)[::-1]])


def polygon_mask(shape: Shape, pts_px: np.ndarray, soft_px: float = 0.0) -> np.ndarray:
  """Filled polygon: [rows, cols] float32 in [0, 1], edges blurred by ``soft_px`` sigma."""
  rows, cols = shape
  im = Image.new("L", (cols, rows), 0)
  ImageDraw.Draw(im).polygon(_points(pts_px), fill=255)
  mask = np.asarray(im, np.float32) / 255.0
  return blur(mask, soft_px)


def line_mask(shape: Shape, pts_px: np.ndarray, width_px: float, soft_px: float = 0.0
              ) -> np.ndarray:
  """Polyline of the given width: [rows, cols] float32 in [0, 1] (thin lines are dimmed)."""
  rows, cols = shape
  im = Image.new("L", (cols, rows), 0)
  width = max(1, int(round(width_px)))
  # Lines thinner than a pixel are drawn one pixel wide at reduced intensity.
  fill = int(round(255 * min(1.0, max(width_px, 0.3))))
  ImageDraw.Draw(im).line(_points(pts_px), fill=fill, width=width, joint="curve")
  return blur(np.asarray(im, np.float32) / 255.0, soft_px)


def polylines_image(shape: Shape, lines_px: np.ndarray, widths_px: np.ndarray,
                    values: np.ndarray) -> np.ndarray:
  """Draws many short polylines (thickest first) into one float image [rows, cols].

  Args:
    shape: (rows, cols).
    lines_px: [N, 2 * P] flat (x, y) points of N polylines of P points each.
    widths_px: [N] widths; lines under a pixel are drawn one pixel wide, dimmed.
    values: [N] attenuation of each line.
  """
  rows, cols = shape
  im = Image.new("F", (cols, rows), 0.0)
  draw = ImageDraw.Draw(im)
  order = np.argsort(-widths_px, kind="stable")
  fills = (values * np.minimum(1.0, widths_px))[order].tolist()
  widths = np.maximum(1, np.round(widths_px)).astype(int)[order].tolist()
  for pts, fill, width in zip(lines_px[order].tolist(), fills, widths):
    draw.line(pts, fill=fill, width=width)
  return np.asarray(im, np.float32)


def blur(field: np.ndarray, sigma_px: float) -> np.ndarray:
  """Gaussian blur; sigmas above 4 px run on a reduced copy and are enlarged back."""
  if sigma_px < 0.3:
    return field
  if sigma_px <= 4:
    return ndimage.gaussian_filter(field, sigma_px, truncate=3.0)
  factor = int(sigma_px // 2)
  rows, cols = field.shape
  small = Image.fromarray(np.ascontiguousarray(field, np.float32), "F").reduce(factor)
  small = ndimage.gaussian_filter(np.asarray(small), sigma_px / factor, truncate=3.0)
  big = Image.fromarray(small, "F").resize((cols, rows), Image.BILINEAR)
  return np.asarray(big, np.float32)


def soften(field: np.ndarray, sigma_px: float) -> np.ndarray:
  """Detector unsharpness: a cheap binomial [1, 2, 1] / 4 blur (sigma about 0.7 px) for small
  sigmas, a Gaussian above 1.2 px."""
  if sigma_px > 1.2:
    return blur(field, sigma_px)
  out = field.copy()
  out[1:-1] = 0.5 * field[1:-1] + 0.25 * (field[:-2] + field[2:])
  tmp = out.copy()
  out[:, 1:-1] = 0.5 * tmp[:, 1:-1] + 0.25 * (tmp[:, :-2] + tmp[:, 2:])
  return out


def box_of_mask(mask: np.ndarray, threshold: float) -> tuple[float, float, float, float] | None:
  """Pixel box (x1, y1, x2, y2) of ``mask > threshold``; None when nothing passes."""
  hit = mask > threshold
  rows = np.flatnonzero(hit.any(axis=1))
  if not len(rows):
    return None
  cols = np.flatnonzero(hit.any(axis=0))
  return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


class BodyTexture:
  """Smooth random fields fixed to the body frame, resampled onto a study's pixel grid.

  The body-to-pixel map is a similarity transform, so each field is one PIL affine resampling of
  a random lattice (C speed) rather than a per-pixel interpolation in Python.

  Args:
    seed: per-patient seed; the same seed gives the same fields in every study.
    acq: the study's projection (``to_pixels`` parameters: centre, anchor, scale, angle).
    factor: the grid is the image reduced by this integer factor.
  """

  _EXTENT = (-1.8, -1.2, 1.8, 3.2)  # u0, v0, u1, v1 covered by the lattice

  def __init__(self, seed: int, acq, factor: int):
    self._seed = seed
    self._acq = acq
    self._factor = factor
    self._cache: dict[tuple[float, int], np.ndarray] = {}

  def field(self, cell: float, key: int = 0) -> np.ndarray:
    """Zero-mean, unit-variance field with features of about ``cell`` thorax units."""
    if (cell, key) not in self._cache:
      u0, v0, u1, v1 = self._EXTENT
      step = cell / 2
      shape = (int((v1 - v0) / step) + 2, int((u1 - u0) / step) + 2)
      rng = np.random.default_rng([self._seed, key, int(cell * 1e4)])
      lattice = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 1.0)
      lattice /= lattice.std() + 1e-6
      acq, f = self._acq, self._factor
      c, s = np.cos(acq.angle), np.sin(acq.angle)
      k = f / (acq.scale * step)
      (cx, cy), (au, av) = acq.centre, acq.anchor
      coeffs = (c * k, s * k, ((au - u0) - (c * cx + s * cy) / acq.scale) / step + 0.5,
                -s * k, c * k, ((av - v0) + (s * cx - c * cy) / acq.scale) / step + 0.5)
      rows, cols = -(-acq.rows // f), -(-acq.cols // f)
      image = Image.fromarray(lattice, "F").transform((cols, rows), Image.AFFINE, coeffs,
                                                      resample=Image.BILINEAR)
      self._cache[(cell, key)] = np.asarray(image, np.float32)
    return self._cache[(cell, key)]
