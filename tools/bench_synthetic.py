"""Times the synthetic radiograph renderer: milliseconds per image by preset, image size and view.

  python tools/bench_synthetic.py                    # all presets, 128/256/512/1024 px
  python tools/bench_synthetic.py --sizes 512 --images 50

Each image gets a fresh patient, a fresh acquisition and 0 to 3 random findings (so the numbers
include finding drawing); one core, no warm caches beyond the first image.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from locvqa_jax.data.synthetic.render import (  # pylint: disable=g-import-not-at-top
    RENDER_PRESETS, render, sample_acquisition, sample_anatomy)
from locvqa_jax.data.synthetic.truth import (  # pylint: disable=g-import-not-at-top
    DRAWABLE_FINDINGS, Finding)


def _findings(rng: np.random.Generator) -> list[Finding]:
  out = []
  for name in rng.choice(DRAWABLE_FINDINGS, size=int(rng.integers(0, 4)), replace=False):
    side = None if "cardi" in name else str(rng.choice(["left", "right", "bilateral"]))
    out.append(Finding(str(name), side, None, None, None, float(rng.uniform(0.1, 0.9))))
  return out


def bench(preset: str, size: int, view: str, images: int) -> tuple[float, float]:
  """Returns (median, mean) milliseconds per rendered image (sampling included)."""
  knobs = RENDER_PRESETS[preset]
  times = []
  for i in range(images + 1):
    rng = np.random.default_rng(i)
    start = time.perf_counter()
    anatomy = sample_anatomy(rng, knobs)
    acq = sample_acquisition(rng, knobs, view, size)
    render(anatomy, acq, _findings(rng), [], rng, knobs)
    if i:  # the first image pays for imports and caches
      times.append((time.perf_counter() - start) * 1000)
  return float(np.median(times)), float(np.mean(times))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--presets", nargs="+", default=sorted(RENDER_PRESETS))
  parser.add_argument("--sizes", nargs="+", type=int, default=[128, 256, 512, 1024])
  parser.add_argument("--views", nargs="+", default=["PA", "AP", "LATERAL"])
  parser.add_argument("--images", type=int, default=20, help="images per cell")
  args = parser.parse_args()
  print(f"{'preset':<10} {'size':>5} {'view':<8} {'median ms':>10} {'mean ms':>8} {'img/s':>6}")
  for preset in args.presets:
    for size in args.sizes:
      for view in args.views:
        median, mean = bench(preset, size, view, args.images)
        print(f"{preset:<10} {size:>5} {view:<8} {median:>10.1f} {mean:>8.1f} "
              f"{1000 / mean:>6.1f}", flush=True)


if __name__ == "__main__":
  main()
