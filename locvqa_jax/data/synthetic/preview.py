"""A PNG contact sheet of rendered studies with their region and finding boxes.

Used by ``python -m locvqa_jax.data.synthetic --preview PNG`` and for the pictures in the docs.
Drawn with PIL only (no matplotlib start-up cost).
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Box = tuple[float, float, float, float]
PreviewItem = tuple[np.ndarray, dict[str, Box], Sequence[tuple[str, Box]], str]

# Regions outlined thinly on every tile; the labelled ones get their name written.
_LABELLED = ("right lung", "left lung", "cardiac silhouette", "trachea")
_OUTLINED = _LABELLED + ("right upper lung zone", "right mid lung zone", "right lower lung zone",
                         "left upper lung zone", "left mid lung zone", "left lower lung zone",
                         "right hilar structures", "left hilar structures", "right apical zone",
                         "left apical zone", "right costophrenic angle", "left costophrenic angle",
                         "carina", "aortic arch")
_REGION_COLOUR = (80, 200, 255)
_FINDING_COLOURS = ((255, 80, 80), (255, 200, 0), (120, 255, 120), (255, 120, 255),
                    (255, 150, 60), (160, 160, 255))


def _font(size: int) -> ImageFont.ImageFont:
  try:
    return ImageFont.load_default(size=size)
  except (TypeError, OSError):  # Pillow built without FreeType
    return ImageFont.load_default()


def draw_preview(items: Sequence[PreviewItem], path: str, columns: int = 4,
                 tile: Optional[int] = 384) -> str:
  """Writes a grid of studies to ``path`` (PNG) and returns the path.

  Args:
    items: (image [H, W] uint8, region_boxes {bbox_name: (x1, y1, x2, y2)}, [(label, box), ...]
      for findings, title) per tile; boxes in the image's pixels.
    path: output PNG file; its folder is created if needed.
    columns: tiles per row.
    tile: longest side of each tile in pixels (None keeps each image's own size).
  """
  if not items:
    raise ValueError("draw_preview: items is empty; give at least one (image, regions, "
                     "findings, title) tuple")
  if columns < 1:
    raise ValueError(f"draw_preview: columns must be >= 1, got {columns}")
  tiles = []
  for i, (image, regions, findings, title) in enumerate(items):
    image = np.asarray(image)
    if image.ndim != 2 or image.dtype != np.uint8:
      raise ValueError(f"draw_preview: item {i} image must be [H, W] uint8, got "
                       f"{image.shape} {image.dtype}")
    tiles.append(_tile(image, regions, findings, title, tile))
  tw = max(t.width for t in tiles)
  th = max(t.height for t in tiles)
  columns = min(columns, len(tiles))
  rows = -(-len(tiles) // columns)
  sheet = Image.new("RGB", (columns * tw, rows * th), (0, 0, 0))
  for i, t in enumerate(tiles):
    sheet.paste(t, ((i % columns) * tw, (i // columns) * th))
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  sheet.save(path, format="PNG", optimize=True)
  return path


def _tile(image: np.ndarray, regions: dict[str, Box], findings: Sequence[tuple[str, Box]],
          title: str, size: Optional[int]) -> Image.Image:
  h, w = image.shape
  scale = 1.0 if size is None else size / max(h, w)
  new = (max(1, round(w * scale)), max(1, round(h * scale)))
  im = Image.fromarray(image).resize(new, Image.BILINEAR).convert("RGB")
  header = 16
  out = Image.new("RGB", (new[0], new[1] + header), (0, 0, 0))
  out.paste(im, (0, header))
  draw = ImageDraw.Draw(out)
  small = _font(10)

  def scaled(box: Box) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = box
    return (x1 * scale, y1 * scale + header, x2 * scale, y2 * scale + header)

  for name in _OUTLINED:
    if name in regions:
      draw.rectangle(scaled(regions[name]), outline=_REGION_COLOUR, width=1)
      if name in _LABELLED:
        x1, y1, _, _ = scaled(regions[name])
        draw.text((x1 + 2, y1 + 1), name, fill=_REGION_COLOUR, font=small)
  for j, (label, box) in enumerate(findings):
    colour = _FINDING_COLOURS[j % len(_FINDING_COLOURS)]
    x1, y1, x2, y2 = scaled(box)
    draw.rectangle((x1, y1, x2, y2), outline=colour, width=2)
    draw.text((x1 + 2, max(header, y2 + 1)), label, fill=colour, font=small)
  draw.text((3, 2), title, fill=(255, 255, 255), font=_font(11))
  return out
