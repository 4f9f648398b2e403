"""Times the scoring of N synthetic predictions, one metric group at a time, as a table.

  /work/main/.venv/bin/python tools/bench_eval.py --n 70000                 # test-split mix
  /work/main/.venv/bin/python tools/bench_eval.py --n 70000 --difference_fraction 1 --no_bertscore

Difference answers follow the Medical-Diff-VQA grammar (DATA_FORMATS.md 3.3): references are drawn
at random (a third `nothing has changed.`), predictions copy the reference half of the time and are
otherwise perturbed or redrawn, so both exact hits and near misses are scored; random finding
combinations make most strings distinct, which is the slow case for BERTScore. The other questions
are short closed or open answers. The default share of difference questions, 0.234, is that of the
Medical-Diff-VQA test split (16,389 of 70,070); NLG metrics and BERTScore run on those only.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# pylint: disable=wrong-import-position
from locvqa_jax.evaluation import findings
from locvqa_jax.evaluation import registry
from locvqa_jax.evaluation.records import Prediction
from locvqa_jax.evaluation.report import render_table

LEVELS = ("small", "moderate", "large", "mild", "severe", "minimal", "moderate to large")
QUESTION = "what has changed compared to the reference image?"


def _listed(names: list[str], singular: str, plural: str) -> str:
  if len(names) == 1:
    return f"{singular} {names[0]} than the reference image. "
  return f"{plural} {', '.join(names[:-1])}, and {names[-1]} than the reference image. "


def _answer(rng: random.Random, added: list[str], missing: list[str],
            levels: list[str]) -> str:
  text = "".join(
      f"the level of {f} has changed from {rng.choice(LEVELS)} to {rng.choice(LEVELS)}. "
      for f in levels)
  if added:
    text += _listed(added, "the main image has an additional finding of",
                    "the main image has additional findings of")
  if missing:
    text += _listed(missing, "the main image is missing the finding of",
                    "the main image is missing the findings of")
  return text or "nothing has changed."


def _draw(rng: random.Random) -> tuple[list[str], list[str], list[str]]:
  if rng.random() < 1 / 3:
    return [], [], []
  pool = rng.sample(findings.FINDINGS, 7)
  return pool[:rng.randint(0, 3)], pool[3:3 + rng.randint(0, 3)], pool[6:6 + rng.randint(0, 1)]


def synthetic_predictions(n: int, seed: int = 0,
                          difference_fraction: float = 1.0) -> list[Prediction]:
  """[n] predictions, a `difference_fraction` share of them difference questions."""
  rng = random.Random(seed)
  out = []
  for i in range(n):
    if rng.random() >= difference_fraction:
      finding = rng.choice(findings.FINDINGS)
      if rng.random() < 0.6:
        question, answers = f"is there {finding}?", ("yes", "no")
      else:
        question, answers = f"what level is the {finding}?", LEVELS
      reference = rng.choice(answers)
      prediction = reference if rng.random() < 0.7 else rng.choice(answers)
      out.append(Prediction("presence" if len(answers) == 2 else "level", question, reference,
                            prediction, id=i))
      continue
    added, missing, levels = _draw(rng)
    reference = _answer(rng, added, missing, levels)
    roll = rng.random()
    if roll < 0.5:
      prediction = reference
    elif roll < 0.8:
      if added and rng.random() < 0.5:
        added2 = added[:-1]
      else:
        added2 = added + [rng.choice(findings.FINDINGS)]
      prediction = _answer(rng, added2, missing, levels)
    else:
      prediction = _answer(rng, *_draw(rng))
    out.append(Prediction("difference", QUESTION, reference, prediction, id=i))
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--n", type=int, default=70000, help="number of answers")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--difference_fraction", type=float, default=0.234,
                      help="share of difference questions (the test split's is 0.234)")
  parser.add_argument("--no_bertscore", action="store_true")
  parser.add_argument("--bertscore_model", help="local model folder (default: packaged MiniLM)")
  parser.add_argument("--progress", action="store_true", help="show the scorers' progress bars")
  args = parser.parse_args()

  predictions = synthetic_predictions(args.n, args.seed, args.difference_fraction)
  difference = [p for p in predictions if p.question_type == "difference"]
  unique = len({p.reference for p in difference} | {p.prediction for p in difference})
  context = registry.ScoringContext(progress=args.progress, bertscore_model=args.bertscore_model)
  rows = []
  total = 0.0
  for name in registry.names():
    if name == "bertscore" and args.no_bertscore:
      continue
    group = registry.get(name)
    selected = [p for p in predictions if group.selects(p)]
    if not selected:
      continue
    if name == "bertscore":
      start = time.perf_counter()
      context.bert_scorer()
      load = time.perf_counter() - start
      rows.append(["bertscore model load", "-", f"{load:.1f}", "-", "-"])
      total += load
    start = time.perf_counter()
    scores = group.compute(selected, context)
    seconds = time.perf_counter() - start
    total += seconds
    headline = {"nlg": "cider", "bertscore": "f1", "findings": "finding_f1",
                "exact_match": "accuracy"}.get(name)
    value = f"{name}.{headline}={scores[headline]:.4f}" if headline else ""
    rows.append([name, str(len(selected)), f"{seconds:.1f}", f"{len(selected) / seconds:,.0f}",
                 value])
  rows.append(["total", str(len(predictions)), f"{total:.1f}",
               f"{len(predictions) / total:,.0f}", ""])
  print(f"{args.n} synthetic predictions, {len(difference)} difference answers with {unique} "
        f"distinct strings, {os.cpu_count()} CPUs")
  print(render_table(["metric group", "answers", "seconds", "answers/s", "score"], rows))


if __name__ == "__main__":
  main()
