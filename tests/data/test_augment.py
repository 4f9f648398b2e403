"""Augmentation: boxes move with the image, no flips, intensity range, image decoding."""

import io

import numpy as np
import pytest
from PIL import Image

from locvqa_jax.data import augment

SIZE = 128
GEOMETRY_ONLY = augment.AugmentConfig(max_rotate_deg=10.0, scale=(0.8, 1.2), max_translate=0.1,
                                      brightness=0.0, contrast=0.0)


def _bright_box_image(box):
  image = np.zeros((SIZE, SIZE, 1), np.uint8)
  y0, x0, y1, x1 = (np.asarray(box) * SIZE).round().astype(int)
  image[y0:y1, x0:x1] = 255
  return image


def _bbox_of_bright(image_f):
  ys, xs = np.nonzero(image_f[..., 0] > 0.0)  # > half intensity in [-1, 1]
  return np.array([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]) / SIZE


def test_box_moves_with_image():
  box = np.array([0.25, 0.3, 0.5, 0.7], np.float32)
  image = _bright_box_image(box)
  for seed in range(20):
    out, boxes = augment.augment(image, box[None], np.random.default_rng(seed), GEOMETRY_ONLY)
    assert out.dtype == np.float32 and out.shape == (SIZE, SIZE, 1)
    np.testing.assert_allclose(boxes[0], _bbox_of_bright(out), atol=2.5 / SIZE)
    assert not np.allclose(boxes[0], box, atol=1 / SIZE)  # it did move


def test_boxes_leaving_the_frame_are_clipped():
  matrix = np.array([[1.0, 0.0, 40.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # 40 px to the right
  moved, keep = augment.transform_boxes(np.array([[0.2, 0.5, 0.4, 0.9], [0.2, 0.9, 0.4, 0.95]]),
                                        matrix, SIZE)
  np.testing.assert_allclose(moved[0], [0.2, 0.5 + 40 / SIZE, 0.4, 1.0], atol=1e-6)
  assert keep.tolist() == [True, False]


def test_box_out_of_frame_keeps_geometry():
  box = np.array([0.0, 0.0, 0.02, 0.02], np.float32)  # corner: a shift can push it out
  image = _bright_box_image([0.3, 0.3, 0.6, 0.6])
  cfg = augment.AugmentConfig(max_rotate_deg=0.0, scale=(1.0, 1.0), max_translate=0.2,
                              brightness=0.0, contrast=0.0)
  for seed in range(20):
    out, boxes = augment.augment(image, box[None], np.random.default_rng(seed), cfg)
    assert boxes[0][2] > boxes[0][0] and boxes[0][3] > boxes[0][1]
    if np.allclose(boxes[0], box):
      np.testing.assert_allclose(_bbox_of_bright(out), [0.3, 0.3, 0.6, 0.6], atol=1.5 / SIZE)


def test_no_flips():
  image = np.zeros((SIZE, SIZE, 1), np.uint8)
  image[40:60, 10:30] = 255  # a marker on the image's left, top half
  for seed in range(30):
    out, _ = augment.augment(image, np.zeros((0, 4)), np.random.default_rng(seed), GEOMETRY_ONLY)
    ys, xs = np.nonzero(out[..., 0] > 0)
    assert xs.mean() < SIZE / 3 and ys.mean() < SIZE / 2


def test_intensity_and_range():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (SIZE, SIZE, 1)).astype(np.uint8)
  out, _ = augment.augment(image, np.zeros((0, 4)), rng, augment.AugmentConfig())
  assert out.min() >= -1.0 and out.max() <= 1.0
  off, _ = augment.augment(image, np.zeros((0, 4)), rng, augment.AugmentConfig(enabled=False))
  np.testing.assert_allclose(off, image / 127.5 - 1.0, atol=1e-6)
  assert augment.to_float(np.array([[[0]], [[255]]], np.uint8)).ravel().tolist() == [-1.0, 1.0]


def test_decode_image_bytes_and_arrays():
  image = np.arange(64, dtype=np.uint8).reshape(8, 8)
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format="PNG")
  for value in (buf.getvalue(), image, image[..., None]):
    np.testing.assert_array_equal(augment.decode_image(value), image[..., None])


def test_config_errors():
  with pytest.raises(ValueError, match="unknown keys \\['flip'\\]"):
    augment.AugmentConfig.from_config({"flip": True})
  assert not augment.AugmentConfig.from_config(None).enabled
