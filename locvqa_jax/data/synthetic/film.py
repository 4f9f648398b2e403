"""From attenuation to a MIMIC-CXR-JPG-like 8-bit image: exposure, unsharpness, noise,
edge enhancement, histogram equalisation, collimator edges and burnt-in markers."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from locvqa_jax.data.synthetic import raster
from locvqa_jax.data.synthetic.acquisition import Acquisition


def _equalize(img8: np.ndarray, amount: float, gamma: float) -> np.ndarray:
  """Blend of a gamma-curved percentile window and histogram equalisation of a uint8 image."""
  hist = np.bincount(img8.ravel(), minlength=256).astype(np.float64)
  cdf = np.cumsum(hist)
  cdf /= cdf[-1]
  lo = int(np.searchsorted(cdf, 0.005))
  hi = int(np.searchsorted(cdf, 0.9995))
  # Standard equalisation: the darkest occupied level maps to 0, however common it is.
  first = cdf[np.flatnonzero(hist)[0]]
  cdf = np.clip((cdf - first) / max(1 - first, 1e-6), 0, 1)
  levels = np.arange(256, dtype=np.float64)
  window = np.clip((levels - lo) / max(hi - lo, 1), 0, 1) ** gamma * 255
  lut = (1 - amount) * window + amount * cdf * 255
  return lut.astype(np.float32)[img8]


def _font(height: float) -> ImageFont.ImageFont:
  try:
    return ImageFont.load_default(size=max(6, int(height)))
  except (TypeError, OSError):  # Pillow built without FreeType
    return ImageFont.load_default()


def develop(att: np.ndarray, acq: Acquisition, rng: np.random.Generator) -> np.ndarray:
  """Turns attenuation into the final image.

  Args:
    att: [rows, cols] float32 attenuation (air 0, mid-chest soft tissue about 1).
    acq: exposure, noise, processing, collimation and markers of the study.
    rng: the study's generator (noise only).

  Returns:
    [rows, cols] uint8.
  """
  size = max(acq.rows, acq.cols)
  # Processed radiographs are displayed roughly linear in attenuation with a soft shoulder.
  bright = np.tanh(0.75 * acq.exposure * np.maximum(att, 0))
  # Uniform noise of the same spread as Gaussian noise, several times cheaper to draw.
  noise = rng.random(bright.shape, dtype=np.float32) - 0.5
  bright += (acq.noise * np.sqrt(12.0)) * noise * (0.5 + bright)
  bright = raster.soften(bright, max(acq.blur, 0.5 * size / 512))
  # Clinical post-processing: a wide unsharp mask that crisps edges and flattens the background.
  wide = raster.blur(bright, 24 * size / 512)
  bright = bright + acq.edge_enhance * (bright - wide)
  img8 = np.clip(bright * 255, 0, 255).astype(np.uint8)
  out = _equalize(img8, acq.equalize, acq.gamma)
  for edge, width in acq.collimation:
    w = int(round(width))
    region = {"top": np.s_[:w, :], "bottom": np.s_[-w:, :], "left": np.s_[:, :w],
              "right": np.s_[:, -w:]}[edge]
    if w > 0:
      out[region] = 0.7 * 255 + 0.15 * out[region]
  image = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
  draw = ImageDraw.Draw(image)
  for text, x, y, height in acq.markers:
    draw.text((x, y), text, fill=255, font=_font(height), anchor="mt")
  return np.asarray(image, np.uint8)
