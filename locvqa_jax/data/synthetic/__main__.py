"""Command line of the synthetic generator.

  python -m locvqa_jax.data.synthetic --out DIR --patients N --seed S \
      [--image-size 512] [--workers K] [--preset easy|realistic] [--knob NAME=VALUE ...] \
      [--preview PNG] [--overwrite]

Patients are generated in a process pool (each from its own generator derived from the seed and
the patient index, so the output is the same for any ``--workers``), then the tables are written
and a summary is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import multiprocessing
import os
import shutil
import sys
import time
from typing import Any, Iterator, Optional, Sequence

import tqdm

from locvqa_jax.data.synthetic import layout, presets, writers

PREVIEW_IMAGES = 8
# Workers start from a clean server process rather than a fork of the caller, which may be
# multithreaded (e.g. a test or notebook that imported JAX).
START_METHOD = "forkserver"


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m locvqa_jax.data.synthetic",
      description="Write synthetic MIMIC-CXR-JPG, reports, Chest ImaGenome and Medical-Diff-VQA "
                  "files in the layouts of the real releases.")
  parser.add_argument("--out", required=True, help="output folder (must be empty or absent)")
  parser.add_argument("--patients", type=int, required=True, help="number of patients")
  parser.add_argument("--seed", type=int, required=True, help="run seed (output is a function "
                      "of seed, patients, image size, preset and knobs)")
  parser.add_argument("--image-size", type=int, default=512,
                      help="nominal longest image side in pixels (default 512)")
  parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
  parser.add_argument("--preset", default="easy", choices=sorted(presets.PRESETS),
                      help="difficulty preset (default easy)")
  parser.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE",
                      help="replace one renderer setting of the preset (a RenderKnobs field of "
                      "locvqa_jax/data/synthetic/knobs.py, e.g. shift_frac=0.08; a pair as "
                      "ap_heart_magnification=1.1,1.2); repeatable")
  parser.add_argument("--preview", default=None, help="also draw a grid of studies to this PNG")
  parser.add_argument("--overwrite", action="store_true",
                      help="delete the contents of a non-empty --out first")
  args = parser.parse_args(argv)
  if args.patients < 1:
    parser.error(f"--patients must be at least 1, got {args.patients}")
  if args.workers < 1:
    parser.error(f"--workers must be at least 1, got {args.workers}")
  if not 64 <= args.image_size <= 4096:
    parser.error(f"--image-size must be in [64, 4096] pixels, got {args.image_size}")
  args.knob_overrides = ()
  if args.knob:  # The renderer's settings are only loaded when there is something to check.
    try:
      args.knob_overrides = parse_knobs(args.knob,
                                        presets.get_preset(args.preset).render_knobs())
    except ValueError as e:
      parser.error(str(e))
  return args


def parse_knobs(items: Sequence[str], base: Any) -> tuple[tuple[str, Any], ...]:
  """`NAME=VALUE` strings -> (field, value) pairs for `dataclasses.replace(base, ...)`.

  Raises:
    ValueError: naming the item, for a missing '=', an unknown field (with the closest name), a
      value that is not a number (or a pair for tuple fields), or one the knobs reject.
  """
  fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
  pairs = {}
  for item in items:
    name, sep, text = item.partition("=")
    name = name.strip()
    if not sep:
      raise ValueError(f"--knob {item!r}: expected NAME=VALUE, e.g. shift_frac=0.08")
    if name not in fields:
      close = difflib.get_close_matches(name, sorted(fields), n=1)
      hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(fields))}"
      raise ValueError(f"--knob {item!r}: unknown renderer setting {name!r}; {hint}")
    try:
      values = tuple(float(v) for v in text.split(","))
    except ValueError:
      raise ValueError(f"--knob {item!r}: {text!r} is not a number") from None
    want = len(fields[name]) if isinstance(fields[name], tuple) else 1
    if len(values) != want:
      raise ValueError(f"--knob {item!r}: {name} takes {want} comma-separated numbers")
    pairs[name] = values if want > 1 else values[0]
  try:
    dataclasses.replace(base, **pairs)
  except ValueError as e:
    raise ValueError(f"--knob: {e}") from None
  return tuple(sorted(pairs.items()))


def _prepare_out(out: str, overwrite: bool) -> None:
  if os.path.exists(out) and not os.path.isdir(out):
    raise SystemExit(f"--out {out!r} exists and is not a folder")
  if os.path.isdir(out) and os.listdir(out):
    if not overwrite:
      raise SystemExit(f"--out {out!r} is not empty; pass --overwrite to replace its contents")
    for name in os.listdir(out):
      path = os.path.join(out, name)
      if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
      else:
        os.remove(path)
  os.makedirs(out, exist_ok=True)


def _tasks(args: argparse.Namespace, preset: presets.Preset) -> list[writers.PatientTask]:
  knobs = preset.timeline
  ids = layout.draw_run_ids(
      args.seed, args.patients, knobs.max_studies, mimic_val=knobs.mimic_val_fraction,
      mimic_test=knobs.mimic_test_fraction, imagenome_val=knobs.imagenome_val_fraction,
      imagenome_test=knobs.imagenome_test_fraction, gold_fraction=knobs.gold_fraction)
  n_preview = 3 if args.preview else 0
  return [writers.PatientTask(
      index=i, seed=args.seed, preset=preset.name, image_size=args.image_size,
      out_dir=os.path.abspath(args.out), subject_id=ids.subject_ids[i],
      study_ids=ids.study_ids[i], mimic_split=ids.mimic_split[i],
      imagenome_split=ids.imagenome_split[i], gold=ids.gold[i], keep_preview=i < n_preview,
      knob_overrides=args.knob_overrides)
      for i in range(args.patients)]


def _run(tasks: list[writers.PatientTask], workers: int) -> Iterator[writers.PatientResult]:
  if workers == 1:
    yield from map(writers.generate_patient, tasks)
    return
  chunksize = max(1, min(16, len(tasks) // (workers * 8)))
  with multiprocessing.get_context(START_METHOD).Pool(workers) as pool:
    yield from pool.imap(writers.generate_patient, tasks, chunksize=chunksize)


def _preview(path: str, results: list[writers.PatientResult]) -> None:
  from locvqa_jax.data.synthetic import preview  # pylint: disable=g-import-not-at-top
  items = [item for r in results for item in r.preview][:PREVIEW_IMAGES]
  if os.path.dirname(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
  preview.draw_preview(items, path, columns=4)


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = parse_args(argv)
  preset = presets.get_preset(args.preset)
  _prepare_out(args.out, args.overwrite)
  start = time.time()
  tasks = _tasks(args, preset)
  results = []
  for result in tqdm.tqdm(_run(tasks, args.workers), total=len(tasks), desc="patients",
                          unit="patient", file=sys.stderr):
    results.append(result)
  counts = writers.write_tables(args.out, results)
  if args.preview:
    _preview(args.preview, results)
  elapsed = time.time() - start
  n_frontal = sum(len(r.imagenome) for r in results)
  n_images = sum(r.n_images for r in results)
  knobs = "".join(f", {k}={v}" for k, v in args.knob_overrides)
  print(f"synthetic data ({preset.name}{knobs}, {args.image_size} px, seed {args.seed}) "
        f"in {args.out}")
  print(f"  patients {len(results)}  studies {sum(r.n_studies for r in results)}  "
        f"images {n_images} (frontal {n_frontal}, lateral {n_images - n_frontal})  "
        f"pairs {sum(r.n_pairs for r in results)}")
  print(f"  questions {sum(counts.values())}: "
        + "  ".join(f"{qtype} {n}" for qtype, n in counts.items()))
  if args.preview:
    print(f"  preview {args.preview}")
  print(f"  {elapsed:.1f} s with {args.workers} worker(s)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
