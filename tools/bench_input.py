"""Input pipeline throughput: examples per second of the pretraining and VQA pipelines.

  python tools/bench_input.py --data_dir D --res r128 --batch_size 32 --workers 0,2 \
      --tokenizer W/tokenizer.model

Without --data_dir it runs on in-memory stand-in records (random PNG images of the resolution,
a few region phrases each), which measures decode + augment + tokenize + batch without disk.
Without --tokenizer it trains a small one on the records' text first. Prints one table row per
(pipeline, workers).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time

import numpy as np
from PIL import Image

# Runs from a checkout without installing the package.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
# pylint: disable=wrong-import-position
from locvqa_jax import tokenizer as tokenizer_lib
from locvqa_jax.data import pipeline
from locvqa_jax.data import tasks
from locvqa_jax.data import vqa_inputs

_PHRASES = ("small left pleural effusion.", "mild pulmonary edema.", "no pneumothorax.")


def _png(rng: np.random.Generator, size: int) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(buf, format="PNG")
  return buf.getvalue()


def stand_in_records(n: int, size: int, seed: int = 0):
  """(chest_imagenome-like, mimic_diff_vqa-like) record lists with encoded PNG images."""
  rng = np.random.default_rng(seed)
  names = tasks.REGION_NAMES[:10]
  boxes = [np.array([0.1 + 0.05 * k, 0.1, 0.5 + 0.04 * k, 0.45 + 0.05 * k], np.float32)
           for k in range(10)]
  images = [_png(rng, size) for _ in range(min(n, 16))]
  scene = [{"image": images[i % len(images)], "dicom_id": f"d{i}".encode(),
            "study_id": str(i).encode(),
            "objects": {"bbox_name": [x.encode() for x in names], "bbox": boxes},
            "phrases": {"text": [p.encode() for p in _PHRASES],
                        "bbox_name": [x.encode() for x in names[:3]], "bbox": boxes[:3]},
            "report": (" FINDINGS: " + " ".join(_PHRASES * 8) + "\n IMPRESSION: "
                       + _PHRASES[0] + "\n").encode()} for i in range(n)]
  vqa = [{"main_image": images[i % len(images)], "ref_image": images[(i + 1) % len(images)],
          "study_id": str(i).encode(), "ref_id": str(i + n).encode(),
          "questions": {"question": [b"what has changed compared to the reference image?",
                                     b"is there pneumothorax?"],
                        "answer": [b"the main image has an additional finding of edema than the "
                                   b"reference image. ", b"no"],
                        "question_type": [b"difference", b"presence"],
                        "row_index": [np.int64(2 * i), np.int64(2 * i + 1)]}}
         for i in range(n)]
  return scene, vqa


def measure(loader, batches: int, warmup: int) -> float:
  """Examples per second over `batches` batches after `warmup` batches."""
  it = iter(loader)
  for _ in range(warmup):
    next(it)
  start, n = time.perf_counter(), 0
  for _ in range(batches):
    n += len(next(it)["text"])
  return n / (time.perf_counter() - start)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--data_dir", default="", help="TFDS data_dir (default: stand-in records)")
  parser.add_argument("--res", default="r128", help="builder config, e.g. r128, r224, r448")
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--workers", default="0,2", help="comma-separated grain worker counts")
  parser.add_argument("--batches", type=int, default=20)
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--tokenizer", default="", help="tokenizer .model (default: train one)")
  parser.add_argument("--records", type=int, default=256, help="stand-in records")
  parser.add_argument("--pipelines", default="pretrain,vqa")
  args = parser.parse_args()

  cfg = tasks.pretrain_input_config()
  vcfg = vqa_inputs.vqa_input_config()
  cfg.data_dir = vcfg.data_dir = args.data_dir
  cfg.res = vcfg.res = args.res
  if args.data_dir:
    scene = vqa = None
    excluded = tasks.vqa_eval_study_ids(args.data_dir, args.res)
  else:
    scene, vqa = stand_in_records(args.records, int(args.res.lstrip("r")))
    excluded = set()
  if args.tokenizer:
    tok = tokenizer_lib.Tokenizer.from_file(args.tokenizer)
  elif args.data_dir:
    tok = tokenizer_lib.train_tokenizer(tokenizer_lib.corpus_from_datasets(args.data_dir, args.res))
  else:
    tok = tokenizer_lib.train_tokenizer(list(_PHRASES) * 50)

  rows = []
  for name in args.pipelines.split(","):
    for workers in (int(w) for w in args.workers.split(",")):
      if name == "pretrain":
        loader = pipeline.pretrain_loader(
            cfg, tok, split="train", global_batch_size=args.batch_size, train=True,
            sources=None if scene is None else {"chest_imagenome": scene},
            excluded_studies=excluded, worker_count=workers)
      elif name == "vqa":
        loader = vqa_inputs.vqa_loader(vcfg, tok, split="train", global_batch_size=args.batch_size,
                                       train=True, records=vqa, worker_count=workers)
      else:
        raise ValueError(f"--pipelines: unknown {name!r}; expected pretrain and/or vqa")
      rows.append((name, args.res, args.batch_size, workers,
                   measure(loader, args.batches, args.warmup)))

  source = args.data_dir or f"stand-in records ({args.records})"
  print(f"\ninput pipeline throughput on {source}")
  print(f"| pipeline | res | batch | workers | examples/s |\n|---|---|---|---|---|")
  for name, res, batch, workers, rate in rows:
    print(f"| {name} | {res} | {batch} | {workers} | {rate:.1f} |")


if __name__ == "__main__":
  main()
