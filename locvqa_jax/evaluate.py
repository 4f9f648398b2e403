"""Scores VQA predictions under the EKAID protocol plus BERTScore and finding-level metrics.

  python -m locvqa_jax.evaluate --predictions FILE.jsonl [--out DIR] \
      [--bertscore_model PATH | --no_bertscore] [--bertscore_layer K]

reads one JSON object per line with at least `question_type`, `question`, `reference` and
`prediction` (`id` optional), writes DIR/metrics.json (DIR defaults to the file's folder) and
prints the tables.

  python -m locvqa_jax.evaluate --workdir W [--split test] [--step N] [--blind_workdir W2] \
      [--beam_size K --length_penalty A --no_repeat_ngram_size N]

decodes every question of the split with a trained difference-VQA run (the checkpoint kept as
best on validation unless --step or --checkpoint latest), writes W/eval/<split>_<step>/
predictions.jsonl and metrics.json, and prints the model beside the blind run and the most
frequent training answer (locvqa_jax/vqa_evaluate.py). Any method's outputs, another paper's released predictions included, are scored
exactly like this project's own. The library entry point is `score_predictions(records) -> dict`.
"""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import sys
from typing import Optional, Sequence

from locvqa_jax.evaluation import bertscore
from locvqa_jax.evaluation import nlg
from locvqa_jax.evaluation.records import PredictionsFormatError, read_jsonl
from locvqa_jax.evaluation.report import format_metrics
from locvqa_jax.evaluation.scoring import score_predictions

__all__ = ["score_predictions", "write_metrics", "main"]


def build_parser() -> argparse.ArgumentParser:
  """Flags; the source of predictions is one of a mutually exclusive, required group."""
  parser = argparse.ArgumentParser(
      prog="python -m locvqa_jax.evaluate",
      description="Score VQA predictions (EKAID protocol, BERTScore, finding-level metrics).")
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument(
      "--predictions", type=pathlib.Path, metavar="FILE.jsonl",
      help="score an existing predictions file; one JSON object per line with question_type, "
           "question, reference, prediction (id optional)")
  source.add_argument(
      "--workdir", metavar="W",
      help="decode and score a trained difference-VQA run (configs/diff_vqa.py)")
  model = parser.add_argument_group("with --workdir")
  model.add_argument("--split", default="test", choices=("train", "validation", "test"))
  model.add_argument("--step", type=int, help="checkpoint step (default: the best on validation)")
  model.add_argument("--checkpoint", default="best", choices=("best", "latest"),
                     help="without --step: the best-on-validation or the latest checkpoint")
  model.add_argument("--blind_workdir", metavar="W2",
                     help="the blind run (configs/diff_vqa.py:...,blind) scored beside the model")
  model.add_argument("--beam_size", type=int, default=1, help="1: greedy decoding")
  model.add_argument("--length_penalty", type=float, default=1.0)
  model.add_argument("--no_repeat_ngram_size", type=int, default=0)
  model.add_argument("--batch_size", type=int, default=0,
                     help="questions per decoding batch (default: the run's validation batch)")
  model.add_argument("--max_batches", type=int, default=0, help="stop early (0: whole split)")
  parser.add_argument(
      "--out", type=pathlib.Path, metavar="DIR",
      help="where metrics.json goes (default: the folder of --predictions)")
  parser.add_argument(
      "--bertscore_model", metavar="PATH",
      help="local Hugging Face model folder for BERTScore (default: the model shipped by the "
           f"`{bertscore.DEFAULT_MODEL_PACKAGE}` package)")
  parser.add_argument(
      "--bertscore_layer", type=int, metavar="K",
      help="hidden layer matched by BERTScore (0 = embeddings; default: the last layer)")
  parser.add_argument(
      "--no_bertscore", action="store_true",
      help="skip BERTScore (no torch/transformers/model needed)")
  parser.add_argument("--no_progress", action="store_true", help="hide progress bars")
  return parser


def write_metrics(metrics: dict, out_dir: pathlib.Path) -> pathlib.Path:
  """Writes out_dir/metrics.json (indented, keys in insertion order) and returns its path."""
  out_dir.mkdir(parents=True, exist_ok=True)
  path = out_dir / "metrics.json"
  path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
  return path


def _score_file(args: argparse.Namespace) -> int:
  predictions = read_jsonl(args.predictions)
  metrics = score_predictions(
      predictions, no_bertscore=args.no_bertscore, bertscore_model=args.bertscore_model,
      bertscore_layer=args.bertscore_layer, progress=not args.no_progress)
  metrics = {"predictions_file": str(args.predictions.resolve()), **metrics}
  path = write_metrics(metrics, args.out or args.predictions.resolve().parent)
  print(format_metrics(metrics))
  print(f"\nWrote {path}")
  return 0


def _score_workdir(args: argparse.Namespace) -> int:
  from locvqa_jax import vqa_evaluate  # pylint: disable=g-import-not-at-top
  # orbax notes at WARNING every checkpoint item it is not asked to restore.
  logging.getLogger("absl").setLevel(logging.ERROR)
  result = vqa_evaluate.evaluate_workdir(
      args.workdir, split=args.split, step=args.step, checkpoint=args.checkpoint,
      blind_workdir=args.blind_workdir, beam_size=args.beam_size,
      length_penalty=args.length_penalty, no_repeat_ngram_size=args.no_repeat_ngram_size,
      batch_size=args.batch_size, max_batches=args.max_batches,
      score_kwargs=dict(no_bertscore=args.no_bertscore, bertscore_model=args.bertscore_model,
                        bertscore_layer=args.bertscore_layer),
      progress=not args.no_progress)
  print(format_metrics(result["columns"]["model"]))
  print(f"\nModel and baselines on {args.split}:")
  print(vqa_evaluate.comparison_table(result["columns"]))
  print(f"\nWrote {result['out_dir']}/predictions.jsonl and metrics*.json")
  return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = build_parser().parse_args(argv)
  if args.no_bertscore and (args.bertscore_model or args.bertscore_layer is not None):
    print("error: --no_bertscore cannot be combined with --bertscore_model/--bertscore_layer",
          file=sys.stderr)
    return 2
  try:
    return _score_workdir(args) if args.workdir else _score_file(args)
  except (PredictionsFormatError, nlg.JavaNotFoundError, bertscore.BertScoreModelError,
          FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
