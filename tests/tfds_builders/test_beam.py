"""The builders under TFDS's Beam support (DirectRunner); runs only where apache-beam is installed
(it is not a project dependency)."""

import pytest

import tiny_raw

beam = pytest.importorskip("apache_beam")

import tensorflow_datasets as tfds  # noqa: E402

from tfds_builders.chest_imagenome import ChestImagenome  # noqa: E402
from tfds_builders.mimic_diff_vqa import MimicDiffVqa  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("cls,counts", [
    (ChestImagenome, {"train": 2, "validation": 1, "test": 1}),
    (MimicDiffVqa, {"train": 1, "validation": 1, "test": 1})])
def test_direct_runner(tmp_path, cls, counts):
  raw = tiny_raw.write(str(tmp_path / "raw"), "release")
  builder = cls(config="r128", data_dir=str(tmp_path / "out"))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=raw, beam_options=beam.options.pipeline_options.PipelineOptions(
          runner="DirectRunner")))
  assert {k: v.num_examples for k, v in builder.info.splits.items()} == counts
  example = tiny_raw.read_all(builder, "train")[0]
  image = example.get("image", example.get("main_image"))
  assert image.shape == (128, 128, 1)
