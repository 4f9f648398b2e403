"""Decoding, letterboxing and re-encoding the MIMIC-CXR JPGs, in a process pool."""

from __future__ import annotations

import dataclasses
import io
import multiprocessing
import os
from typing import Callable, Iterable, Iterator, Optional, TypeVar

import numpy as np
from PIL import Image
import tqdm

from locvqa_jax.data import letterbox as letterbox_lib

T = TypeVar("T")
R = TypeVar("R")

IMAGE_FORMATS = ("png", "jpeg")
# JPEG quality of the `jpeg` image format (the MIMIC-CXR-JPG files themselves use 95).
JPEG_QUALITY = 95


@dataclasses.dataclass(frozen=True)
class LoadedImage:
  """A letterboxed, encoded image, or the reason it could not be made."""
  path: str
  data: bytes = b""
  height: int = 0  # original size in pixels
  width: int = 0
  error: str = ""


def encode(image: np.ndarray, image_format: str) -> bytes:
  """image: [R, R] uint8 -> PNG or JPEG bytes."""
  buf = io.BytesIO()
  if image_format == "png":
    Image.fromarray(image, mode="L").save(buf, format="PNG")
  elif image_format == "jpeg":
    Image.fromarray(image, mode="L").save(buf, format="JPEG", quality=JPEG_QUALITY)
  else:
    raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
  return buf.getvalue()


def load_letterboxed(path: str, size: int, image_format: str) -> LoadedImage:
  """Reads one JPG as grayscale, letterboxes it to [size, size] and encodes it.

  `height`/`width` of the result are the file's full-resolution size (what box coordinates in
  original pixels refer to), whatever scale the decoder used.

  Never raises for a bad file: the error comes back in `LoadedImage.error` so the parent
  process decides whether it fails the build or is skipped.
  """
  try:
    with Image.open(path) as im:
      width, height = im.size
      # JPEG decoding at 1/2, 1/4 or 1/8 scale in the DCT domain (still >= 2x the target side,
      # so the final antialiased resize sets the quality) makes decoding several times faster.
      im.draft("L", (2 * size, 2 * size))
      im.load()
      if im.mode not in ("L", "I;16", "I", "RGB", "RGBA", "P", "LA"):
        return LoadedImage(path, error=f"unsupported image mode {im.mode}")
      gray = im.convert("L")
  except FileNotFoundError:
    return LoadedImage(path, error="image file does not exist")
  except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as e:
    return LoadedImage(path, error=f"cannot decode image: {e}")
  array = np.asarray(gray, np.uint8)
  boxed = letterbox_lib.letterbox(array, size)
  return LoadedImage(path, encode(boxed, image_format), height, width)


def default_workers() -> int:
  return max(1, min(8, os.cpu_count() or 1))


def parallel_map(fn: Callable[[T], R], items: Iterable[T], *, workers: int, total: Optional[int],
                 desc: str, chunksize: int = 8) -> Iterator[R]:
  """Yields fn(item) in input order, computed by `workers` processes (in-process when <= 1).

  `fn` must be picklable (a module-level function or a functools.partial of one).
  """
  bar = tqdm.tqdm(total=total, desc=desc, unit="ex", mininterval=1.0, leave=False)
  try:
    if workers <= 1:
      for item in items:
        yield fn(item)
        bar.update()
      return
    # forkserver, not fork: the caller may be multithreaded (JAX, grain), and a fork copies held
    # locks. Workers import what they unpickle, so the first chunk starts a little later.
    with multiprocessing.get_context("forkserver").Pool(workers) as pool:
      for result in pool.imap(fn, items, chunksize=chunksize):
        yield result
        bar.update()
  finally:
    bar.close()
