"""Letterboxing and box conversions between the 224 canvas, original pixels and the frame."""

import numpy as np
import pytest

from locvqa_jax.data import letterbox


def test_params_portrait_and_landscape():
  assert letterbox.letterbox_params(300, 200, 150) == (0.5, 0, 25)
  assert letterbox.letterbox_params(200, 300, 150) == (0.5, 25, 0)
  assert letterbox.letterbox_params(100, 100, 224) == (2.24, 0, 0)


def test_letterbox_image_is_centred_and_padded():
  image = np.full((300, 200), 200, np.uint8)
  out = letterbox.letterbox(image, 150)
  assert out.shape == (150, 150) and out.dtype == np.uint8
  assert (out[:, :25] == 0).all() and (out[:, 125:] == 0).all()
  assert (out[:, 25:125] == 200).all()
  landscape = letterbox.letterbox(np.full((200, 300, 1), 7, np.uint8), 150)
  assert (landscape[:25] == 0).all() and (landscape[125:] == 0).all()
  assert (landscape[25:125] == 7).all()


def test_letterbox_rejects_colour():
  with pytest.raises(ValueError, match="grayscale"):
    letterbox.letterbox(np.zeros((4, 4, 3), np.uint8), 8)


def test_original_to_frame_portrait_landscape():
  # Portrait 300x200: x offset (1 - 200/300) / 2 = 1/6.
  box = letterbox.original_to_frame((0, 0, 200, 300), 300, 200)
  np.testing.assert_allclose(box, (0, 1 / 6, 1, 5 / 6))
  box = letterbox.original_to_frame((30, 60, 90, 150), 200, 300)
  np.testing.assert_allclose(box, (60 / 300 + 1 / 6, 0.1, 150 / 300 + 1 / 6, 0.3))


def test_canvas_and_original_agree():
  height, width = 2544, 3056
  original = (100.0, 400.0, 1500.0, 2000.0)
  ratio = 224 / max(height, width)
  left, top = (224 - width * ratio) / 2, (224 - height * ratio) / 2
  canvas = (original[0] * ratio + left, original[1] * ratio + top,
            original[2] * ratio + left, original[3] * ratio + top)
  np.testing.assert_allclose(letterbox.canvas224_to_frame(canvas),
                             letterbox.original_to_frame(original, height, width), atol=1e-9)


def test_frame_box_matches_letterboxed_pixels():
  height, width, size = 300, 200, 150
  image = np.zeros((height, width), np.uint8)
  image[60:120, 40:100] = 255
  out = letterbox.letterbox(image, size)
  ymin, xmin, ymax, xmax = letterbox.original_to_frame((40, 60, 100, 120), height, width)
  rows, cols = np.nonzero(out > 128)
  assert abs(rows.min() - ymin * size) <= 1 and abs(rows.max() + 1 - ymax * size) <= 1
  assert abs(cols.min() - xmin * size) <= 1 and abs(cols.max() + 1 - xmax * size) <= 1


def test_clip_box():
  assert letterbox.clip_box((-0.1, 0.2, 0.5, 1.3)) == (0.0, 0.2, 0.5, 1.0)
  assert letterbox.clip_box((1.1, 0.2, 1.5, 0.4)) is None  # entirely outside
  assert letterbox.clip_box((0.3, 0.2, 0.3, 0.4)) is None  # zero height
  assert letterbox.clip_box((0.1, 0.2, 0.3, 0.4)) == (0.1, 0.2, 0.3, 0.4)
