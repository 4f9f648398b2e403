"""Builds one dataset without TensorFlow (the `tfds build` CLI needs TensorFlow).

  python -m tfds_builders.build mimic_cxr --manual_dir=/data/physionet --config=r224 \
      --data_dir=~/tensorflow_datasets [--skip_bad_examples] [--image_format png|jpeg] \
      [--workers 8] [--max_examples_per_split N]

Prints a progress bar and the build summary; the summary is also saved as
`<data_dir>/<name>/<config>/<version>/build_summary.json`.
"""

from __future__ import annotations

import argparse
import os
import sys

import tensorflow_datasets as tfds

from tfds_builders.common import builder_base
from tfds_builders.common.issues import BadInputError
from tfds_builders.chest_imagenome import ChestImagenome
from tfds_builders.mimic_cxr import MimicCxr
from tfds_builders.mimic_diff_vqa import MimicDiffVqa

BUILDERS = {"mimic_cxr": MimicCxr, "chest_imagenome": ChestImagenome,
            "mimic_diff_vqa": MimicDiffVqa}


def build(name: str, *, manual_dir: str, data_dir: str, config: str = "r224",
          image_format: str = "png", skip_bad_examples: bool = False,
          workers: int | None = None,
          max_examples_per_split: int | None = None) -> tfds.core.DatasetBuilder:
  """Builds `name/config` (with `_jpeg` appended for JPEG) and returns the builder."""
  if name not in BUILDERS:
    raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(BUILDERS)}")
  config_name = builder_base.config_name(config, image_format)
  known = [c.name for c in BUILDERS[name].BUILDER_CONFIGS]
  if config_name not in known:
    raise ValueError(f"unknown config {config_name!r}; expected one of {known}")
  builder = BUILDERS[name](config=config_name, data_dir=os.path.expanduser(data_dir),
                           skip_bad_examples=skip_bad_examples, workers=workers)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=os.path.expanduser(manual_dir), max_examples_per_split=max_examples_per_split))
  return builder


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m tfds_builders.build", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("name", choices=sorted(BUILDERS))
  parser.add_argument("--manual_dir", required=True, help="folder holding the raw releases")
  parser.add_argument("--data_dir", required=True, help="TFDS data_dir to write to")
  parser.add_argument("--config", default="r224", choices=["r128", "r224", "r448"])
  parser.add_argument("--image_format", default="png", choices=["png", "jpeg"])
  parser.add_argument("--skip_bad_examples", action="store_true",
                      help="skip damaged examples and count them instead of failing")
  parser.add_argument("--workers", type=int, default=None,
                      help="image worker processes (default: min(8, cpu count))")
  parser.add_argument("--max_examples_per_split", type=int, default=None,
                      help="write at most this many examples per split (a quick trial build)")
  args = parser.parse_args(argv)
  try:
    builder = build(args.name, manual_dir=args.manual_dir, data_dir=args.data_dir,
                    config=args.config, image_format=args.image_format,
                    skip_bad_examples=args.skip_bad_examples, workers=args.workers,
                    max_examples_per_split=args.max_examples_per_split)
  except BadInputError as e:
    print(f"build failed: {e}", file=sys.stderr)
    return 1
  print(f"written to {builder.data_dir}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
