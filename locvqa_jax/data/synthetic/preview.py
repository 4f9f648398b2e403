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


def demo_items(preset: str, image_size: int = 512, seed: int = 0) -> list[PreviewItem]:
  """Eight studies of four patients through the renderer's API, for the docs' pictures.

  Each patient gets a baseline and a follow-up, so a reader sees normal anatomy, findings of
  several kinds and levels, AP versus PA, devices, acquisition changes and a lateral view.
  """
  # Imported here so ``draw_preview`` stays free of the renderer for callers that only draw.
  from locvqa_jax.data.synthetic.render import (  # pylint: disable=g-import-not-at-top
      RENDER_PRESETS, render, sample_acquisition, sample_anatomy)
  from locvqa_jax.data.synthetic.truth import Device, Finding  # pylint: disable=g-import-not-at-top

  f = Finding
  patients = [
      (("PA", [], []),
       ("PA", [f("pleural effusion", "left", "base", "moderate", None, 0.55),
               f("atelectasis", "left", "lower", "mild", "plate-like", 0.4)], [])),
      (("AP", [f("cardiomegaly", None, None, "mild", None, 0.3)],
        [Device("endotracheal tube"), Device("enteric tube"), Device("central line", "right")]),
       ("AP", [f("cardiomegaly", None, None, "moderate", None, 0.5),
               f("edema", "bilateral", None, "moderate", None, 0.6),
               f("pleural effusion", "bilateral", "base", "small", "layering", 0.3)],
        [Device("endotracheal tube"), Device("enteric tube"), Device("central line", "right")])),
      (("PA", [f("consolidation", "right", "lower", "moderate", "patchy", 0.65)], []),
       ("LATERAL", [f("consolidation", "right", "lower", "moderate", "patchy", 0.65)], [])),
      (("PA", [f("pneumothorax", "right", "apical", "small", None, 0.45),
               f("fracture", "right", "mid", None, None, 0.7)], [Device("pacemaker", "left")]),
       ("PA", [f("granuloma", "left", "upper", None, None, 0.5),
               f("lung opacity", "left", "mid", "mild", "ground-glass", 0.5)],
        [Device("pacemaker", "left")])),
  ]
  knobs = RENDER_PRESETS[preset]
  items = []
  for p, studies in enumerate(patients):
    patient_rng = np.random.default_rng([seed, p])
    anatomy = sample_anatomy(patient_rng, knobs)
    for s, (view, findings, devices) in enumerate(studies):
      rng = np.random.default_rng([seed, p, s])
      acq = sample_acquisition(rng, knobs, view, image_size)
      out = render(anatomy, acq, findings, devices, rng, knobs)
      labels = [(fi.name, box) for fi, boxes in zip(findings, out.finding_boxes) for box in boxes]
      names = ", ".join(f"{fi.level + ' ' if fi.level else ''}{fi.name}" for fi in findings)
      items.append((out.image, out.region_boxes, labels,
                    f"{preset} p{p} s{s} {view}: {names or 'no finding'}"))
  return items


def main(argv: Optional[Sequence[str]] = None) -> None:
  """``python -m locvqa_jax.data.synthetic.preview --preset easy --out preview.png``."""
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description="Render demo studies and write a preview PNG.")
  parser.add_argument("--preset", default="easy")
  parser.add_argument("--out", required=True)
  parser.add_argument("--image-size", type=int, default=512)
  parser.add_argument("--tile", type=int, default=320)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  items = demo_items(args.preset, args.image_size, args.seed)
  print(draw_preview(items, args.out, columns=4, tile=args.tile))


if __name__ == "__main__":
  main()
