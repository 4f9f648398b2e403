r"""Runs the quick start's pretraining and prints box quality beside the per-region mean box.

  python tools/check_pretrain_quality.py --data_dir D [--workdir W] [--build] \
      [--preset easy|realistic] [--config_args a=b,...] [--config.key=value ...]
  python tools/check_pretrain_quality.py --data_dir D --build --reading_run

With --build, D is filled first as tools/quickstart.sh does (1000 synthetic patients at 256 px,
the three builders at r128, the tokenizer to D/tokenizer.model) with the generator preset
--preset (easy, as the quick start); otherwise D must hold those. The run is `python -m
locvqa_jax.train --config configs/pretrain_locca.py:runlocal,quickstart,data_dir=D[,config_args]
--workdir W` plus the given overrides.

--reading_run is the tiny run whose boxes follow the image (docs/training.md, "A decoder that
reads where the tokens are"): the realistic preset, `loc_embed_init=sincos,memory_posemb=sincos2d`,
3000 steps at lr 3e-3, validation on 16 batches (about 7 minutes on 2 CPU cores with --build).

Prints the first and last logged training loss, the wall time, and per task the validation loss,
IoU, accuracy at IoU 0.5 and share of parseable boxes beside the baseline, and both IoUs against
the nearest box the row's phrase has in the image. Exit status 1 when the training loss did not
fall or CAREF does not beat the baseline on that phrase-level IoU (a finding sentence linked to
both lungs is found by either lung's box, for the model as for the mean box).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASETS = ("mimic_cxr", "chest_imagenome", "mimic_diff_vqa")


def _run(*args: str) -> None:
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT] + sys.path))
  subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, check=True)


# The tiny run whose boxes follow the image: config arguments, overrides, generator preset.
READING_RUN = dict(
    config_args="loc_embed_init=sincos,memory_posemb=sincos2d",
    overrides=["--config.total_steps=3000", "--config.lr=3e-3",
               "--config.evals.val.every_steps=3000", "--config.evals.val.max_batches=16",
               "--config.ckpt_every_steps=3000"],
    preset="realistic")


def build_data(data_dir: str, patients: int = 1000, preset: str = "easy") -> None:
  """The quick start's synthetic data (generator `preset`), three builders at r128, tokenizer."""
  raw = os.path.join(data_dir, "raw")
  _run("locvqa_jax.data.synthetic", "--out", raw, "--patients", str(patients), "--seed", "0",
       "--image-size", "256", "--workers", "2", "--preset", preset, "--overwrite")
  for name in DATASETS:
    _run("tfds_builders.build", name, f"--manual_dir={raw}", "--config=r128",
         f"--data_dir={data_dir}", "--workers=2")
  _run("locvqa_jax.tokenizer", "--data_dir", data_dir, "--config", "r128", "--out",
       os.path.join(data_dir, "tokenizer.model"))


def pretrain(data_dir: str, workdir: str, overrides: list[str],
             config_args: str = "") -> dict[str, float]:
  """Runs the quick start's pretraining; returns its summary (see `summarize`)."""
  start = time.time()
  extra = f",{config_args}" if config_args else ""
  _run("locvqa_jax.train", "--config",
       f"configs/pretrain_locca.py:runlocal,quickstart,data_dir={data_dir}{extra}",
       "--workdir", workdir, *overrides)
  summary = summarize(os.path.join(workdir, "metrics.jsonl"))
  summary["wall_s"] = time.time() - start
  return summary


def summarize(metrics_path: str) -> dict[str, float]:
  """first/last training loss and the last validation metrics (keys without 'val/')."""
  rows = [json.loads(line) for line in open(metrics_path)]
  train = [r["train/loss"] for r in rows if "train/loss" in r]
  val = [r for r in rows if "val/loss" in r]
  if not train or not val:
    raise ValueError(f"{metrics_path}: no training loss or no validation row")
  out = {k[4:]: v for k, v in val[-1].items() if k.startswith("val/")}
  out.update(first_train_loss=train[0], last_train_loss=train[-1], step=val[-1].get("step", -1))
  return out


def table(s: dict[str, float]) -> str:
  lines = [f"training loss {s['first_train_loss']:.3f} -> {s['last_train_loss']:.3f}"
           + (f", wall {s['wall_s']:.0f} s" if "wall_s" in s else ""),
           f"{'task':<6} {'val loss':>8} {'IoU':>6} {'acc@.5':>6} {'base IoU':>8} "
           f"{'base acc':>8} {'parsed':>6} {'track':>6} {'phr IoU':>7} {'phr base':>8}"]
  for t in ("cap", "aref", "gcap", "caref"):
    if f"loss_{t}" not in s:
      continue
    f = lambda k: f"{s[k]:.3f}" if k in s else "-"
    lines.append(f"{t:<6} {s[f'loss_{t}']:>8.3f} {f(f'{t}_iou'):>6} {f(f'{t}_acc50'):>6} "
                 f"{f(f'{t}_baseline_iou'):>8} {f(f'{t}_baseline_acc50'):>8} "
                 f"{f(f'{t}_parsed'):>6} {f(f'{t}_tracking'):>6} "
                 f"{f(f'{t}_phrase_iou'):>7} {f(f'{t}_phrase_baseline_iou'):>8}")
  return "\n".join(lines)


def _caref_keys(s: dict[str, float]) -> tuple[str, str, str]:
  """(model key, baseline key, name) of the CAREF score that decides: phrase-level if logged."""
  if "caref_phrase_iou" in s:
    return "caref_phrase_iou", "caref_phrase_baseline_iou", "phrase-level CAREF IoU"
  return "caref_iou", "caref_baseline_iou", "CAREF IoU"


def passes(s: dict[str, float]) -> bool:
  """Loss fell, and CAREF beats the mean box, both scored against the phrase's nearest box."""
  iou, base, _ = _caref_keys(s)
  return s["last_train_loss"] < s["first_train_loss"] and s[iou] > s[base]


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--data_dir", required=True)
  parser.add_argument("--workdir", default="")
  parser.add_argument("--build", action="store_true", help="generate and build the data first")
  parser.add_argument("--preset", default=None, choices=("easy", "realistic"),
                      help="synthetic generator preset for --build (default easy; realistic "
                           "with --reading_run)")
  parser.add_argument("--config_args", default="",
                      help="more configs/pretrain_locca.py arguments, e.g. loc_embed_init=sincos")
  parser.add_argument("--reading_run", action="store_true",
                      help="the tiny run whose boxes follow the image (READING_RUN)")
  args, overrides = parser.parse_known_args()
  preset, config_args = args.preset or "easy", args.config_args
  if args.reading_run:
    preset = args.preset or READING_RUN["preset"]
    config_args = ",".join(a for a in (READING_RUN["config_args"], config_args) if a)
    overrides = READING_RUN["overrides"] + overrides
  if args.build:
    build_data(args.data_dir, preset=preset)
  elif args.preset or args.reading_run:
    print(f"note: {args.data_dir} is used as built; --preset applies to --build only "
          f"(the reading run expects the {READING_RUN['preset']} preset's data)")
  workdir = args.workdir or tempfile.mkdtemp(prefix="locca_quality_")
  summary = pretrain(args.data_dir, workdir, overrides, config_args)
  print(table(summary))
  ok = passes(summary)
  what = _caref_keys(summary)[2]
  print(f"PASS: loss fell and {what} beats the per-region mean box's" if ok else
        f"FAIL: loss did not fall or {what} does not beat the per-region mean box's")
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
