"""How sure a margin between two methods is: paired bootstrap over the questions.

Two prediction sets for the same questions (a model and its blind run, or two papers' released
predictions) are compared metric by metric. The margin is A's score minus B's on the whole set;
its 95 % interval comes from resampling the questions with replacement (the same resample for
both methods, so question difficulty cancels) and recomputing the margin each time:

  cider             difference questions; per-answer CIDEr-D with the IDF of all the references
                    (`nlg.cider_per_answer`), so a resample's CIDEr is the mean of its answers'
  finding_f1        difference questions; micro F1 of the resample's summed item counts
  false_change_rate difference questions whose reference says `nothing has changed.`
  closed_accuracy   exact-match questions whose reference is yes or no

An interval that excludes 0 is a margin the test set supports at that level; one that straddles 0
is not. The resampling is deterministic for a seed.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from locvqa_jax.evaluation import accuracy
from locvqa_jax.evaluation import findings
from locvqa_jax.evaluation import nlg
from locvqa_jax.evaluation.records import Prediction, PredictionsFormatError, as_predictions

METRICS = ("cider", "finding_f1", "false_change_rate", "closed_accuracy")
_DIFFERENCE = "difference"


def align(a: Sequence[Prediction], b: Sequence[Prediction]) -> list[Prediction]:
  """`b` reordered to match `a` question by question.

  By `id` when every record of both sets has a distinct one, else by position; either way each
  pair must share the question and the reference.

  Raises:
    PredictionsFormatError (a ValueError): naming the first question that does not pair up.
  """
  ids_a, ids_b = [p.id for p in a], [p.id for p in b]
  by_id = (None not in ids_a and None not in ids_b and len(set(map(str, ids_a))) == len(a)
           and len(set(map(str, ids_b))) == len(b))
  if len(a) != len(b):
    raise PredictionsFormatError(
        f"cannot pair the two prediction sets: {len(a)} against {len(b)} records")
  if by_id:
    index = {str(p.id): p for p in b}
    missing = [i for i in ids_a if str(i) not in index]
    if missing:
      raise PredictionsFormatError(f"cannot pair the two prediction sets: id {missing[0]!r} "
                       f"(and {len(missing) - 1} more) only in the first")
    b = [index[str(i)] for i in ids_a]
  for k, (p, q) in enumerate(zip(a, b)):
    if (p.question, p.reference) != (q.question, q.reference):
      where = f"id {p.id!r}" if by_id else f"record {k}"
      raise PredictionsFormatError(
          f"cannot pair the two prediction sets at {where}: question/reference "
          f"{p.question!r} / {p.reference!r} against {q.question!r} / {q.reference!r}")
  return list(b)


def _f1(counts: np.ndarray) -> np.ndarray:
  """[..., 3] (tp, fp, fn) sums -> F1 (0 where there are no items at all, as a margin of 0)."""
  tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
  denominator = 2 * tp + fp + fn
  return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)


def _item_counts(references: Sequence[findings.ParsedDifference],
                 predicted: Sequence[frozenset]) -> np.ndarray:
  """[N, 3] (tp, fp, fn) item counts per answer."""
  return np.asarray([(len(r.items & p), len(p - r.items), len(r.items - p))
                     for r, p in zip(references, predicted)], float).reshape(-1, 3)


def _interval(full: float, resampled: np.ndarray, n: int, resamples: int) -> dict[str, Any]:
  low, high = np.percentile(resampled, [2.5, 97.5])
  return {"margin": float(full), "low": float(low), "high": float(high), "n": n,
          "resamples": resamples}


def _mean_interval(per_item: np.ndarray, draws: np.ndarray) -> dict[str, Any]:
  """_interval of a margin that is the mean of per-item differences ([N]; draws [R, N])."""
  return _interval(per_item.mean(), per_item[draws].mean(axis=1), len(per_item), len(draws))


def paired_margins(a: Iterable[Union[Prediction, Mapping[str, Any]]],
                   b: Iterable[Union[Prediction, Mapping[str, Any]]], *,
                   resamples: int = 2000, seed: int = 0,
                   metrics: Sequence[str] = METRICS) -> dict[str, dict[str, Any]]:
  """A's score minus B's with a 95 % paired-bootstrap interval, per metric.

  Args:
    a, b: predictions for the same questions (records or dicts, as `score_predictions` takes).
    resamples: bootstrap resamples.
    seed: seed of the resampling.
    metrics: a subset of METRICS (cider needs Java).

  Returns:
    {metric: {"margin", "low", "high", "n", "resamples"}} for every metric with questions to
    score (n: questions the metric is computed on).
  """
  unknown = sorted(set(metrics) - set(METRICS))
  if unknown:
    raise ValueError(f"paired_margins: unknown metric(s) {unknown}; expected some of {METRICS}")
  if resamples < 1:
    raise ValueError(f"paired_margins: resamples must be >= 1, got {resamples}")
  a = as_predictions(a)
  b = align(a, as_predictions(b))
  rng = np.random.default_rng(seed)
  out: dict[str, dict[str, Any]] = {}
  diff = [k for k, p in enumerate(a) if p.question_type == _DIFFERENCE]
  refs = [a[k].reference for k in diff]
  parsed_refs = [findings.parse_difference(r) for r in refs]
  items_a, items_b = ([findings.parse_difference(preds[k].prediction).items for k in diff]
                      for preds in (a, b))
  if diff:
    draws = rng.integers(0, len(diff), size=(resamples, len(diff)))
    if "cider" in metrics:
      per_pair = (np.asarray(nlg.cider_per_answer(refs, [a[k].prediction for k in diff]))
                  - np.asarray(nlg.cider_per_answer(refs, [b[k].prediction for k in diff])))
      out["cider"] = _mean_interval(per_pair, draws)
    if "finding_f1" in metrics:
      ca, cb = _item_counts(parsed_refs, items_a), _item_counts(parsed_refs, items_b)
      full = _f1(ca.sum(0)) - _f1(cb.sum(0))
      out["finding_f1"] = _interval(full, _f1(ca[draws].sum(1)) - _f1(cb[draws].sum(1)),
                                    len(diff), resamples)
  # Indices into `diff` of the pairs whose reference says nothing has changed.
  nothing = [i for i, r in enumerate(parsed_refs) if r.nothing_changed and not r.items]
  if nothing and "false_change_rate" in metrics:
    per_pair = np.asarray([bool(items_a[i]) - bool(items_b[i]) for i in nothing], float)
    out["false_change_rate"] = _mean_interval(
        per_pair, rng.integers(0, len(nothing), size=(resamples, len(nothing))))
  closed = [k for k, p in enumerate(a) if accuracy.is_exact_match_question(p.question)
            and accuracy.normalize_answer(p.reference) in accuracy.CLOSED_ANSWERS]
  if closed and "closed_accuracy" in metrics:
    right = lambda preds: np.asarray(
        [accuracy.normalize_answer(preds[k].prediction)
         == accuracy.normalize_answer(preds[k].reference) for k in closed], float)
    out["closed_accuracy"] = _mean_interval(
        right(a) - right(b), rng.integers(0, len(closed), size=(resamples, len(closed))))
  return out


def format_margins(margins: Mapping[str, Mapping[str, Any]], a: str = "model",
                   b: Optional[str] = "blind") -> str:
  """A table: metric, margin, 95 % interval, questions, and whether the interval excludes 0."""
  from locvqa_jax.evaluation.report import render_table  # pylint: disable=g-import-not-at-top
  titles = {"cider": "difference CIDEr", "finding_f1": "finding F1",
            "false_change_rate": "false-change rate", "closed_accuracy": "closed accuracy"}
  rows = []
  for name in METRICS:
    if name in margins:
      m = margins[name]
      rows.append([titles[name], f"{m['margin']:+.4f}", f"[{m['low']:+.4f}, {m['high']:+.4f}]",
                   str(m["n"]), "no" if m["low"] <= 0 <= m["high"] else "yes"])
  header = [f"{a} - {b}", "margin", "95 % interval", "n", "excludes 0"]
  return render_table(header, rows)
