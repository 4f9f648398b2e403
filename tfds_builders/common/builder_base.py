"""What the three builders share: the r128/r224/r448 (+ `_jpeg`) configs, the manual_dir
plumbing, the parallel generation loop and the build summary written beside the dataset.

A builder subclass implements `_plan(manual_dir) -> {split: [item, ...]}` (cheap: tables, JSON,
reports) and names two module-level functions: `load(item, size, image_format)` (the image work,
run in worker processes) and `make_example(item, loaded, summary) -> (key, example) | None`.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
from typing import Any, Callable, Optional

import numpy as np
from etils import epath
import tensorflow_datasets as tfds
from tensorflow_datasets.core import utils as tfds_utils

from tfds_builders.common import images
from tfds_builders.common.issues import BuildSummary

RESOLUTIONS = (128, 224, 448)
SUMMARY_FILE = "build_summary.json"


class CxrConfig(tfds.core.BuilderConfig):
  """Letterbox side and image encoding of one build."""

  def __init__(self, *, resolution: int, image_format: str, **kwargs):
    super().__init__(**kwargs)
    self.resolution = resolution
    self.image_format = image_format


def make_configs() -> list[CxrConfig]:
  configs = []
  for image_format, suffix in (("png", ""), ("jpeg", "_jpeg")):
    for r in RESOLUTIONS:
      configs.append(CxrConfig(
          name=f"r{r}{suffix}", resolution=r, image_format=image_format,
          description=f"Images letterboxed to {r}x{r} grayscale, {image_format.upper()}"
          + (f" quality {images.JPEG_QUALITY} (smaller, lossy)." if suffix else " (lossless).")))
  return configs


def config_name(resolution_name: str, image_format: str) -> str:
  """`r224`, `jpeg` -> `r224_jpeg`."""
  if image_format not in images.IMAGE_FORMATS:
    raise ValueError(f"image_format must be one of {images.IMAGE_FORMATS}, got {image_format!r}")
  return resolution_name + ("_jpeg" if image_format == "jpeg" else "")


def _beam_example(item: Any, *, load: Callable, make: Callable, size: int, image_format: str,
                  skip_bad_examples: bool) -> list:
  result = make(item, load(item, size, image_format), BuildSummary(skip_bad_examples))
  return [result] if result is not None else []


class CxrBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base of the three builders (not registered itself)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = make_configs()
  DEFAULT_BUILDER_CONFIG_NAME = "r224"

  # Set by subclasses: module-level functions (picklable for the worker pool and Beam).
  load_fn: Callable = None
  make_example_fn: Callable = None

  @tfds_utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS's own lookup needs the importlib_resources backport; the module file is what it finds.
    return epath.Path(inspect.getfile(cls))

  def __init__(self, *, skip_bad_examples: bool = False, workers: Optional[int] = None,
               **kwargs):
    # array_record is the only format TFDS writes without TensorFlow.
    kwargs.setdefault("file_format", "array_record")
    super().__init__(**kwargs)
    self.skip_bad_examples = skip_bad_examples
    self.workers = images.default_workers() if workers is None else workers
    self.summary = BuildSummary(skip_bad_examples)
    self._use_beam = False

  def image_feature(self) -> tfds.features.Image:
    r = self.builder_config.resolution
    return tfds.features.Image(shape=(r, r, 1), dtype=np.uint8,
                               encoding_format=self.builder_config.image_format)

  def _plan(self, manual_dir: str) -> dict[str, list[Any]]:
    raise NotImplementedError

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    self.summary = BuildSummary(self.skip_bad_examples)
    plan = self._plan(os.fspath(dl_manager.manual_dir))
    for split in ("train", "validation", "test"):
      self.summary.counts[f"{split}_planned"] = len(plan.get(split, []))
      if not plan.get(split):
        self.summary.quirk(f"split '{split}' is empty and not written")
    return {split: self._generate_examples(items) for split, items in plan.items() if items}

  def _generate_examples(self, items: list[Any]):
    load = type(self).load_fn
    make = type(self).make_example_fn
    size, image_format = self.builder_config.resolution, self.builder_config.image_format
    if self._use_beam:
      beam = tfds.core.lazy_imports.apache_beam
      return beam.Create(items) | beam.FlatMap(functools.partial(
          _beam_example, load=load, make=make, size=size, image_format=image_format,
          skip_bad_examples=self.skip_bad_examples))
    return self._generate_local(items, load, make, size, image_format)

  def _generate_local(self, items, load, make, size, image_format):
    fn = functools.partial(load, size=size, image_format=image_format)
    results = images.parallel_map(fn, items, workers=self.workers, total=len(items),
                                  desc=f"{self.name}/{self.builder_config.name}")
    for item, loaded in zip(items, results):
      example = make(item, loaded, self.summary)
      if example is not None:
        yield example

  def _download_and_prepare(self, dl_manager, download_config):
    self._use_beam = bool(download_config.beam_runner or download_config.beam_options)
    super()._download_and_prepare(dl_manager, download_config)
    for split, info in self.info.splits.items():
      self.summary.counts[f"{split}_written"] = info.num_examples
    if self._use_beam:
      self.summary.counts["note"] = ("built with Beam: image-level skips are not counted here")
    # self.data_dir is still TFDS's temporary folder here, so the summary lands atomically.
    with open(os.path.join(self.data_dir, SUMMARY_FILE), "w") as f:
      f.write(self.summary.to_json())
    print(self.summary.format(f"{self.name}/{self.builder_config.name} build summary"))


def read_summary(data_dir: str) -> dict[str, Any]:
  """The build summary saved beside a built dataset (its version folder)."""
  with open(os.path.join(data_dir, SUMMARY_FILE)) as f:
    return json.load(f)
