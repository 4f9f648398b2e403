"""Image augmentation that keeps boxes consistent: small rotation/scale/translation, intensity.

No flips, ever: left and right are labels in chest X-rays. The geometric transform is a similarity
about the image centre; boxes (ymin, xmin, ymax, xmax in [0, 1] of the square frame) move with
the image as the axis-aligned bounds of their four transformed corners, clipped to the frame.
Pixels that come from outside the frame are black, like the letterbox padding.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any, Mapping, Optional

import numpy as np
from PIL import Image


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Ranges of the random transform; each parameter is drawn uniformly per image."""

  enabled: bool = True
  max_rotate_deg: float = 5.0
  scale: tuple[float, float] = (0.9, 1.1)
  max_translate: float = 0.05   # fraction of the side
  brightness: float = 0.1       # additive, in [0, 1] intensity units
  contrast: float = 0.1         # multiplicative around the mean: 1 +- contrast

  @classmethod
  def from_config(cls, cfg: Optional[Mapping[str, Any]]) -> "AugmentConfig":
    if cfg is None:
      return cls(enabled=False)
    cfg = dict(cfg)
    unknown = set(cfg) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
      raise ValueError(f"config.input.augment: unknown keys {sorted(unknown)}; expected "
                       f"{[f.name for f in dataclasses.fields(cls)]}")
    if "scale" in cfg:
      cfg["scale"] = tuple(cfg["scale"])
    return cls(**cfg)


def decode_image(value: Any) -> np.ndarray:
  """An image feature as data_source returns it (uint8 array or undecoded PNG/JPEG bytes)
  -> [R, R, 1] uint8."""
  if isinstance(value, (bytes, np.bytes_)):
    pil = Image.open(io.BytesIO(value))
    value = np.asarray(pil if pil.mode == "L" else pil.convert("L"))
  image = np.asarray(value, np.uint8)
  return image[..., None] if image.ndim == 2 else image


def to_float(image: np.ndarray) -> np.ndarray:
  """[R, R, 1] uint8 -> [R, R, 1] float32 in [-1, 1]."""
  return image.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)


def sample_matrix(rng: np.random.Generator, cfg: AugmentConfig, size: int) -> np.ndarray:
  """Random forward transform: [3, 3] float64 mapping (x, y, 1) input pixels to output pixels.

  Pixel coordinates are continuous with pixel edges at integers, so a box coordinate c maps to
  c * size.
  """
  angle = np.deg2rad(rng.uniform(-cfg.max_rotate_deg, cfg.max_rotate_deg))
  scale = rng.uniform(*cfg.scale)
  tx, ty = rng.uniform(-cfg.max_translate, cfg.max_translate, size=2) * size
  c = size / 2.0
  cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
  return np.array([[cos, -sin, c - cos * c + sin * c + tx],
                   [sin, cos, c - sin * c - cos * c + ty],
                   [0.0, 0.0, 1.0]])


def warp_image(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
  """[R, R, 1] uint8 warped by the forward `matrix` (bilinear, black outside) -> same shape."""
  inv = np.linalg.inv(matrix)
  pil = Image.fromarray(image[..., 0])
  out = pil.transform(pil.size, Image.Transform.AFFINE, data=tuple(inv[:2].ravel()),
                      resample=Image.Resampling.BILINEAR, fillcolor=0)
  return np.asarray(out)[..., None]


def transform_boxes(boxes: np.ndarray, matrix: np.ndarray,
                    size: int) -> tuple[np.ndarray, np.ndarray]:
  """boxes: [N, 4] (ymin, xmin, ymax, xmax) in [0, 1] -> (moved and clipped [N, 4], keep [N]).

  keep is False for boxes that left the frame entirely (empty after clipping).
  """
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4) * size
  ys, xs = boxes[:, [0, 0, 2, 2]], boxes[:, [1, 3, 1, 3]]
  pts = np.stack([xs, ys, np.ones_like(xs)], -1) @ matrix.T  # [N, 4 corners, 3]
  out = np.stack([pts[..., 1].min(1), pts[..., 0].min(1), pts[..., 1].max(1),
                  pts[..., 0].max(1)], -1) / size
  out = np.clip(out, 0.0, 1.0)
  keep = (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])
  return out.astype(np.float32), keep


def adjust_intensity(image: np.ndarray, rng: np.random.Generator,
                     cfg: AugmentConfig) -> np.ndarray:
  """[R, R, 1] float32 in [-1, 1] with random brightness and contrast, clipped to [-1, 1]."""
  x = (image + 1.0) * 0.5
  contrast = rng.uniform(1.0 - cfg.contrast, 1.0 + cfg.contrast)
  brightness = rng.uniform(-cfg.brightness, cfg.brightness)
  mean = x.mean()
  x = (x - mean) * contrast + mean + brightness
  return (np.clip(x, 0.0, 1.0) * 2.0 - 1.0).astype(np.float32)


def augment(image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator,
            cfg: AugmentConfig) -> tuple[np.ndarray, np.ndarray]:
  """Augments one image and the boxes that must stay on it.

  Args:
    image: [R, R, 1] uint8.
    boxes: [N, 4] float32 (ymin, xmin, ymax, xmax) in [0, 1]; N may be 0.
    rng: the example's generator (grain's per-record seed), so the result is reproducible.
    cfg: ranges.

  Returns:
    image [R, R, 1] float32 in [-1, 1] and boxes [N, 4]. When a transform would push one of the
    boxes out of the frame, the image keeps its geometry and only the intensity changes, so a
    task's truth box always stays valid.
  """
  boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
  if not cfg.enabled:
    return to_float(image), boxes
  size = image.shape[0]
  matrix = sample_matrix(rng, cfg, size)
  moved, keep = transform_boxes(boxes, matrix, size)
  if keep.all():
    image, boxes = warp_image(image, matrix), moved
  return adjust_intensity(to_float(image), rng, cfg), boxes
