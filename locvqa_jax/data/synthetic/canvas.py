"""The drawing surface shared by anatomy, findings and devices for one frontal image.

Attenuation is accumulated in three layers: ``sharp`` at full resolution (outlines, vessels, fine
lines), ``mid`` at half resolution (bones, airways, textures) and ``smooth`` on a grid reduced to
about 128 px (thickness profiles, haze, blobs); the reduced layers are enlarged once at the end.
Smooth structures therefore cost almost nothing, which keeps a 512 px image well under 100 ms on
one core.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image

from locvqa_jax.data.synthetic import raster
from locvqa_jax.data.synthetic.acquisition import Acquisition
from locvqa_jax.data.synthetic.anatomy import Anatomy
from locvqa_jax.data.synthetic.geometry import Thorax
from locvqa_jax.data.synthetic.knobs import RenderKnobs

_SMOOTH_SIDE = 128  # longest side of the smooth layer's grid


@dataclasses.dataclass
class Canvas:
  """One frontal image being drawn.

  Attributes:
    acq, anatomy, thorax, knobs: the study being drawn.
    sharp: [rows, cols] float32 full-resolution attenuation.
    mid: [rows / 2, cols / 2] float32 half-resolution attenuation (bones, soft lines).
    smooth: [rows / lo, cols / lo] float32 low-resolution attenuation.
    lo: reduction factor of the smooth layer.
    lung: side -> full-resolution mask of the whole lung outline.
    aerated: side -> full-resolution mask of the aerated lung (smaller under a pneumothorax).
    markings: [rows, cols] the vascular markings drawn into ``sharp`` (so fluid can hide them).
  """

  acq: Acquisition
  anatomy: Anatomy
  thorax: Thorax
  knobs: RenderKnobs
  sharp: np.ndarray = None
  mid: np.ndarray = None
  smooth: np.ndarray = None
  lo: int = 1
  lung: dict = dataclasses.field(default_factory=dict)
  aerated: dict = dataclasses.field(default_factory=dict)
  markings: np.ndarray = None

  def __post_init__(self):
    self.lo = max(1, int(round(max(self.acq.rows, self.acq.cols) / _SMOOTH_SIDE)))
    self.sharp = np.zeros(self.shape(1), np.float32)
    self.mid = np.zeros(self.shape(2), np.float32)
    self.smooth = np.zeros(self.shape(self.lo), np.float32)
    self._grids: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    self._masks: dict[tuple[str, str, int], np.ndarray] = {}
    self._textures: dict[int, raster.BodyTexture] = {}

  def shape(self, factor: int) -> tuple[int, int]:
    return self.acq.grid_shape(factor)

  def grid(self, factor: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) body coordinates of the grid reduced by ``factor``."""
    if factor not in self._grids:
      self._grids[factor] = self.acq.body_grid(factor)
    return self._grids[factor]

  def texture(self, cell: float, key: int = 0, factor: int = 2) -> np.ndarray:
    """Patient-fixed random field (see ``raster.BodyTexture``) on the grid reduced by factor."""
    if factor not in self._textures:
      self._textures[factor] = raster.BodyTexture(self.anatomy.seed, self.acq, factor)
    return self._textures[factor].field(cell, key)

  def hide_markings(self, cover: np.ndarray, factor: int) -> None:
    """Removes vascular markings under ``cover`` (0..1 on the grid reduced by ``factor``)."""
    if self.markings is not None:
      self.sharp -= self.markings * np.clip(self.up(cover), 0, 1)

  def lung_mask(self, side: str, factor: int) -> np.ndarray:
    """Mask of the whole lung outline of ``side`` on the grid reduced by ``factor`` (cached)."""
    if factor == 1 and side in self.lung:
      return self.lung[side]
    key = ("lung", side, factor)
    if key not in self._masks:
      self._masks[key] = self.poly(self.thorax.lungs[side], factor)
    return self._masks[key]

  def aerated_mask(self, side: str, factor: int) -> np.ndarray:
    """Mask of the aerated lung of ``side`` on the grid reduced by ``factor`` (cached)."""
    if self.thorax.aerated[side] is self.thorax.lungs[side]:
      return self.lung_mask(side, factor)
    key = ("aerated", side, factor)
    if key not in self._masks:
      self._masks[key] = self.poly(self.thorax.aerated[side], factor)
    return self._masks[key]

  def spot(self, centre: tuple[float, float], radius: float, edge: float = 0.5
           ) -> tuple[tuple[slice, slice], np.ndarray]:
    """A small full-resolution disc, computed on its own patch only.

    Returns:
      (slices into the full-resolution image, [h, w] disc values in [0, 1]).
    """
    (x, y), = self.acq.to_pixels(np.array([centre]))
    r = max(self.px(radius), 0.7)
    x0, x1 = int(max(0, np.floor(x - 2 * r))), int(min(self.acq.cols, np.ceil(x + 2 * r + 1)))
    y0, y1 = int(max(0, np.floor(y - 2 * r))), int(min(self.acq.rows, np.ceil(y + 2 * r + 1)))
    yy, xx = np.mgrid[y0:max(y0, y1), x0:max(x0, x1)].astype(np.float32) + 0.5
    dist = np.sqrt((xx - x) ** 2 + (yy - y) ** 2) / r
    return np.s_[y0:max(y0, y1), x0:max(x0, x1)], np.clip((1 - dist) / edge + 0.5, 0, 1)

  def px(self, units: float, factor: int = 1) -> float:
    """A length in thorax units as pixels of the grid reduced by ``factor``."""
    return units * self.acq.scale / factor

  def to_px(self, pts: np.ndarray, factor: int = 1) -> np.ndarray:
    return self.acq.to_pixels(pts) / factor

  def poly(self, pts: np.ndarray, factor: int = 1, soft: float = 0.0) -> np.ndarray:
    """Mask of a body-frame polygon on the grid reduced by ``factor``; ``soft`` blurs the edge
    by that many thorax units."""
    return raster.polygon_mask(self.shape(factor), self.to_px(pts, factor),
                               self.px(soft, factor))

  def line(self, pts: np.ndarray, width: float, factor: int = 1, soft: float = 0.0
           ) -> np.ndarray:
    """Mask of a body-frame polyline ``width`` thorax units wide."""
    return raster.line_mask(self.shape(factor), self.to_px(pts, factor),
                            self.px(width, factor), self.px(soft, factor))

  def tube(self, pts: np.ndarray, width: float | np.ndarray, factor: int = 1) -> np.ndarray:
    """Mask of a band ``width`` thorax units wide (scalar or per point) around a polyline."""
    return self.poly(raster.tube_outline(pts, width), factor)

  def ellipse(self, centre: tuple[float, float], ru: float, rv: float, edge: float = 0.15,
              angle: float = 0.0, factor: int | None = None) -> np.ndarray:
    """Ellipse field in [0, 1] with a rim ``edge`` (relative) wide; smooth grid by default."""
    u, v = self.grid(self.lo if factor is None else factor)
    du, dv = u - centre[0], v - centre[1]
    if angle:
      c, s = np.cos(angle), np.sin(angle)
      du, dv = c * du + s * dv, -s * du + c * dv
    r = np.sqrt((du / ru) ** 2 + (dv / rv) ** 2)
    return np.clip((1 - r) / edge + 0.5, 0, 1)

  def up(self, field: np.ndarray) -> np.ndarray:
    """Enlarges a field of a reduced grid to full resolution (bilinear)."""
    rows, cols = self.shape(1)
    if field.shape == (rows, cols):
      return field
    factor = -(-rows // field.shape[0])
    big = Image.fromarray(np.ascontiguousarray(field, np.float32), "F").resize(
        (field.shape[1] * factor, field.shape[0] * factor), Image.BILINEAR)
    return np.asarray(big, np.float32)[:rows, :cols]

  def total(self) -> np.ndarray:
    """Full-resolution attenuation: the sharp layer plus the enlarged mid and smooth layers."""
    return self.sharp + self.up(self.mid) + self.up(self.smooth)

