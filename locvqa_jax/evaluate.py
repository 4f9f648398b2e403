"""Scores VQA predictions under the EKAID protocol plus BERTScore and finding-level metrics.

  python -m locvqa_jax.evaluate --predictions FILE.jsonl [--out DIR] [--data_dir D] \
      [--bertscore_model PATH | --no_bertscore] [--bertscore_layer K] [--compare OTHER.jsonl]

reads one JSON object per line with at least `question_type`, `question`, `reference` and
`prediction` (`id` optional), writes DIR/metrics.json (DIR defaults to the file's folder) and
prints the tables. Difference records with `grounding` boxes (locvqa_jax/evaluation/
grounding.py) are scored for grounding; entries without `truth` get it from the built
chest_imagenome in --data_dir. --compare OTHER.jsonl (the same questions answered by another
method) adds this file's margins over it, each with a 95 % paired-bootstrap interval
(locvqa_jax/evaluation/bootstrap.py), printed and written to DIR/margins.json.

  python -m locvqa_jax.evaluate --workdir W [--split test] [--step N] [--blind_workdir W2] \
      [--beam_size K --length_penalty A --no_repeat_ngram_size N] \
      [--grounding [--pretrain_workdir P] [--grounding_answers reference] \
                   [--constrain_boxes | --free_boxes]]

decodes every question of the split with a trained difference-VQA run (the checkpoint kept as
best on validation unless --step or --checkpoint latest), writes W/eval/<split>_<step>/
predictions.jsonl and metrics.json, and prints the model beside the blind run and the most
frequent training answer (locvqa_jax/vqa_evaluate.py), and with a blind run the model's
margins over it with their bootstrap intervals (margins_blind.json). --grounding also locates
each finding a predicted difference answer names with the pretraining decoder's CAREF and scores
the boxes against Chest ImaGenome's (locvqa_jax/vqa_grounding.py). Any method's outputs, another
paper's released predictions included, are scored exactly like this project's own. The library entry
point is `score_predictions(records) -> dict`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import pathlib
import sys
from typing import Optional, Sequence

from locvqa_jax.evaluation import bertscore
from locvqa_jax.evaluation import bootstrap
from locvqa_jax.evaluation import nlg
from locvqa_jax.evaluation.records import Prediction, PredictionsFormatError, read_jsonl
from locvqa_jax.evaluation.report import format_metrics
from locvqa_jax.evaluation.scoring import score_predictions

__all__ = ["score_predictions", "with_truth", "write_metrics", "main"]


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
  model.add_argument("--grounding", action="store_true",
                     help="locate the findings each difference prediction names (CAREF) and "
                          "score the boxes against the chest_imagenome truth")
  model.add_argument("--pretrain_workdir", metavar="P",
                     help="pretraining run for CAREF (default: the run's config.init.encoder)")
  model.add_argument("--grounding_batch_size", type=int, default=32,
                     help="(image, finding) pairs per CAREF batch")
  model.add_argument("--grounding_answers", default="prediction",
                     choices=("prediction", "reference"),
                     help="locate the findings the predicted answers name, or those the "
                          "reference answers name (CAREF alone, whatever the VQA model says)")
  boxes = model.add_mutually_exclusive_group()
  boxes.add_argument("--constrain_boxes", action="store_const", const=True, default=None,
                     help="CAREF may only generate location tokens (default: as the "
                          "pretraining run's validation)")
  boxes.add_argument("--free_boxes", dest="constrain_boxes", action="store_const", const=False,
                     help="CAREF decodes freely; outputs that are not a box score 0")
  compare = parser.add_argument_group("with --predictions")
  compare.add_argument(
      "--compare", type=pathlib.Path, metavar="OTHER.jsonl",
      help="another method's predictions for the same questions: print and write (margins.json) "
           "this file's margins over it with 95 %% paired-bootstrap intervals")
  compare.add_argument("--resamples", type=int, default=2000,
                       help="bootstrap resamples for --compare (default 2000)")
  parser.add_argument(
      "--data_dir", metavar="D",
      help="a data_dir holding the built chest_imagenome, where the true boxes of grounding "
           "entries are looked up (default with --workdir: the run's config.input.data_dir)")
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


def with_truth(predictions: Sequence[Prediction], data_dir: Optional[str],
               progress: bool = False) -> list[Prediction]:
  """Predictions whose grounding entries all carry true boxes (looked up in data_dir).

  Raises PredictionsFormatError when some lack them and no data_dir is given, before any
  metric runs.
  """
  from locvqa_jax.evaluation import box_truth  # pylint: disable=g-import-not-at-top
  records = [dict(p.extras, id=p.id) for p in predictions]
  dicoms, studies = box_truth.wanted_ids(records)
  if not dicoms and not studies:
    return list(predictions)
  if not data_dir:
    raise PredictionsFormatError(
        "grounding entries without 'truth' boxes: pass --data_dir D (a data_dir holding the "
        "built chest_imagenome) to look them up")
  index = box_truth.open_index(data_dir, dicom_ids=dicoms, study_ids=studies, progress=progress)
  return [dataclasses.replace(p, extras={k: v for k, v in r.items() if k != "id"})
          for p, r in zip(predictions, box_truth.attach_truth(records, index))]


def _score_file(args: argparse.Namespace) -> int:
  predictions = with_truth(read_jsonl(args.predictions), args.data_dir, not args.no_progress)
  other = read_jsonl(args.compare) if args.compare else None
  if other is not None:
    bootstrap.align(predictions, other)  # Fails before any scoring when the sets do not pair.
  metrics = score_predictions(
      predictions, no_bertscore=args.no_bertscore, bertscore_model=args.bertscore_model,
      bertscore_layer=args.bertscore_layer, progress=not args.no_progress)
  metrics = {"predictions_file": str(args.predictions.resolve()), **metrics}
  out_dir = args.out or args.predictions.resolve().parent
  path = write_metrics(metrics, out_dir)
  print(format_metrics(metrics))
  print(f"\nWrote {path}")
  if args.compare:
    margins = bootstrap.paired_margins(predictions, other,
                                       resamples=args.resamples)
    margins_path = out_dir / "margins.json"
    margins_path.write_text(json.dumps(
        {"a": str(args.predictions.resolve()), "b": str(args.compare.resolve()), **margins},
        indent=2) + "\n", encoding="utf-8")
    print("\n" + _margins_title(f"{args.predictions.name} minus {args.compare.name}", margins))
    print(bootstrap.format_margins(margins, a="A", b="B"))
    print(f"\nWrote {margins_path}")
  return 0


def _margins_title(what: str, margins: dict) -> str:
  resamples = next(iter(margins.values()))["resamples"] if margins else 0
  return f"{what} (95 % paired bootstrap over the questions, {resamples} resamples):"


def _score_workdir(args: argparse.Namespace) -> int:
  from locvqa_jax import vqa_evaluate  # pylint: disable=g-import-not-at-top
  # orbax notes at WARNING every checkpoint item it is not asked to restore.
  logging.getLogger("absl").setLevel(logging.ERROR)
  result = vqa_evaluate.evaluate_workdir(
      args.workdir, split=args.split, step=args.step, checkpoint=args.checkpoint,
      blind_workdir=args.blind_workdir, beam_size=args.beam_size,
      length_penalty=args.length_penalty, no_repeat_ngram_size=args.no_repeat_ngram_size,
      batch_size=args.batch_size, max_batches=args.max_batches,
      grounding=dict(pretrain_workdir=args.pretrain_workdir, data_dir=args.data_dir,
                     batch_size=args.grounding_batch_size, constrain_boxes=args.constrain_boxes,
                     answers=args.grounding_answers) if args.grounding else None,
      score_kwargs=dict(no_bertscore=args.no_bertscore, bertscore_model=args.bertscore_model,
                        bertscore_layer=args.bertscore_layer),
      progress=not args.no_progress)
  print(format_metrics(result["columns"]["model"]))
  print(f"\nModel and baselines on {args.split}:")
  print(vqa_evaluate.comparison_table(result["columns"]))
  if result["margins_blind"]:
    print("\n" + _margins_title(f"Model minus blind run on {args.split}", result["margins_blind"]))
    print(bootstrap.format_margins(result["margins_blind"]))
  print(f"\nWrote {result['out_dir']}/predictions.jsonl and metrics*.json")
  return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = build_parser().parse_args(argv)
  if args.no_bertscore and (args.bertscore_model or args.bertscore_layer is not None):
    print("error: --no_bertscore cannot be combined with --bertscore_model/--bertscore_layer",
          file=sys.stderr)
    return 2
  if args.workdir and args.compare:
    print("error: --compare goes with --predictions (with --workdir, --blind_workdir gives the "
          "model's margins over the blind run)", file=sys.stderr)
    return 2
  if not args.workdir and (args.grounding or args.pretrain_workdir):
    print("error: --grounding and --pretrain_workdir go with --workdir (a file's boxes are "
          "scored whenever its records carry them)", file=sys.stderr)
    return 2
  try:
    return _score_workdir(args) if args.workdir else _score_file(args)
  except (PredictionsFormatError, nlg.JavaNotFoundError, bertscore.BertScoreModelError,
          FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
