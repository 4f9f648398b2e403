"""Tests of the preview contact sheet."""

import numpy as np
import pytest
from PIL import Image

from locvqa_jax.data.synthetic.preview import draw_preview


def test_preview_writes_a_grid_png(tmp_path):
  image = np.tile(np.arange(200, dtype=np.uint8), (160, 1))
  regions = {"right lung": (10, 10, 90, 150), "left lung": (110, 10, 190, 150)}
  items = [(image, regions, [("pleural effusion", (120, 100, 180, 150))], f"study {i}")
           for i in range(5)]
  path = draw_preview(items, str(tmp_path / "sub" / "preview.png"), columns=2, tile=100)
  with Image.open(path) as png:
    assert png.format == "PNG"
    assert png.size[0] == 2 * 100 and png.size[1] > 3 * 80
    pixels = np.asarray(png.convert("RGB"))
  # Coloured box outlines were drawn on the grey images.
  assert (pixels[..., 0].astype(int) - pixels[..., 2]).max() > 100


def test_preview_rejects_bad_items(tmp_path):
  with pytest.raises(ValueError, match="items is empty"):
    draw_preview([], str(tmp_path / "x.png"))
  with pytest.raises(ValueError, match="uint8"):
    draw_preview([(np.zeros((4, 4)), {}, [], "")], str(tmp_path / "x.png"))


def test_demo_sheet_renders_every_preset(tmp_path):
  from locvqa_jax.data.synthetic.preview import demo_items, main
  items = demo_items("realistic", image_size=128)
  assert len(items) == 8
  views = [title.split(":")[0].split()[-1] for *_, title in items]
  assert {"PA", "AP", "LATERAL"} <= set(views)
  path = tmp_path / "easy.png"
  main(["--preset", "easy", "--out", str(path), "--image-size", "128", "--tile", "96"])
  with Image.open(path) as png:
    assert png.size == (4 * 96, 2 * (96 + 16))
