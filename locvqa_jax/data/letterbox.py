"""Letterboxing of chest radiographs and box conversions into the letterboxed frame.

A letterboxed frame is a square of side R holding the image with its longest side resized to R,
centred, the rest zero-padded. Chest ImaGenome's 224x224 canvas is built the same way, so a box in
[0, 1] coordinates means the same place in the 224 canvas and in any letterboxed frame, whatever R.

Boxes in the frame are tfds order ``(ymin, xmin, ymax, xmax)`` in [0, 1]; boxes in pixels are
``(x1, y1, x2, y2)`` as Chest ImaGenome writes them.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from PIL import Image

BoxYXYX = tuple[float, float, float, float]

# Chest ImaGenome's canvas side.
CANVAS_224 = 224


def letterbox_params(height: int, width: int, size: int) -> tuple[float, int, int]:
  """Returns (scale, top, left) of letterboxing a [height, width] image into [size, size].

  The resized image is [round(height * scale), round(width * scale)] (at least 1 pixel) and sits
  at rows top.., columns left.. of the square.
  """
  if height <= 0 or width <= 0 or size <= 0:
    raise ValueError(f"letterbox needs positive sizes, got height={height} width={width} "
                     f"size={size}")
  scale = size / max(height, width)
  new_h, new_w = _resized_shape(height, width, size)
  return scale, (size - new_h) // 2, (size - new_w) // 2


def _resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
  scale = size / max(height, width)
  return max(1, min(size, round(height * scale))), max(1, min(size, round(width * scale)))


def letterbox(image: np.ndarray, size: int) -> np.ndarray:
  """Letterboxes a grayscale image.

  Resizing uses PIL's BILINEAR filter, which PIL widens with the downscale factor (an
  antialiasing area filter), so a 3000 px radiograph shrunk to 224 px does not alias.

  Args:
    image: [H, W] uint8 (a trailing channel axis of 1 is accepted).
    size: side R of the output square.

  Returns:
    [size, size] uint8, zero outside the resized image.
  """
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  if image.ndim != 2:
    raise ValueError(f"letterbox expects a [H, W] grayscale image, got shape {image.shape}")
  height, width = image.shape
  _, top, left = letterbox_params(height, width, size)
  new_h, new_w = _resized_shape(height, width, size)
  resized = Image.fromarray(np.asarray(image, np.uint8), mode="L").resize(
      (new_w, new_h), Image.BILINEAR)
  out = np.zeros((size, size), np.uint8)
  out[top:top + new_h, left:left + new_w] = np.asarray(resized)
  return out


def original_to_frame(box_xyxy_px: Sequence[float], height: int, width: int) -> BoxYXYX:
  """Maps a box in original pixels to the letterboxed frame, unclipped.

  Uses the exact (unrounded) centring offset, the same for every frame size:
  ``u = x / max(H, W) + (1 - W / max(H, W)) / 2`` and likewise for y.

  Args:
    box_xyxy_px: (x1, y1, x2, y2) in pixels of the [height, width] original.
    height: original image height in pixels.
    width: original image width in pixels.

  Returns:
    (ymin, xmin, ymax, xmax) in frame units; values may lie outside [0, 1].
  """
  if height <= 0 or width <= 0:
    raise ValueError(f"original_to_frame needs positive sizes, got height={height} width={width}")
  x1, y1, x2, y2 = (float(v) for v in box_xyxy_px)
  longest = float(max(height, width))
  off_x = (1.0 - width / longest) / 2.0
  off_y = (1.0 - height / longest) / 2.0
  return (y1 / longest + off_y, x1 / longest + off_x, y2 / longest + off_y, x2 / longest + off_x)


def canvas224_to_frame(box_xyxy_224: Sequence[float]) -> BoxYXYX:
  """Maps a box on Chest ImaGenome's 224 canvas (x1, y1, x2, y2) to (ymin, xmin, ymax, xmax)."""
  x1, y1, x2, y2 = (float(v) / CANVAS_224 for v in box_xyxy_224)
  return (y1, x1, y2, x2)


def clip_box(box_yxyx: Sequence[float]) -> Optional[BoxYXYX]:
  """Clips a frame box to [0, 1]; returns None when nothing of positive area remains."""
  ymin, xmin, ymax, xmax = (min(1.0, max(0.0, float(v))) for v in box_yxyx)
  if ymax <= ymin or xmax <= xmin:
    return None
  return (ymin, xmin, ymax, xmax)
