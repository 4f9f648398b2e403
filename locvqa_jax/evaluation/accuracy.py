"""Exact-match accuracy of non-difference answers, closed (yes/no) and open, as EKAID scores it.

EKAID compares the generated answer string with the reference string and skips every question
that contains `what has changed` (the difference questions, scored by NLG metrics instead). A
question is closed when its reference answer is `yes` or `no` (abnormality yes/no questions
included), open otherwise.

Both strings are compared after lower-casing and collapsing whitespace: EKAID's vocabulary is
lower-case (`pa`, `ap`) and its decoder joins tokens with single spaces, so case and spacing are
not part of what it measured.
"""

from __future__ import annotations

from typing import Optional, Sequence

DIFFERENCE_QUESTION_MARKER = "what has changed"
CLOSED_ANSWERS = frozenset({"yes", "no"})


def normalize_answer(text: str) -> str:
  """Lower-case, single-spaced, stripped form used for exact matching."""
  return " ".join(str(text).lower().split())


def is_exact_match_question(question: str) -> bool:
  """True for questions EKAID scores by exact match (every question without `what has changed`)."""
  return DIFFERENCE_QUESTION_MARKER not in str(question).lower()


def exact_match_accuracy(references: Sequence[str], predictions: Sequence[str]) -> dict:
  """Exact-match accuracy overall, on closed and on open questions.

  Args:
    references: [N] reference answers of questions already filtered by `is_exact_match_question`.
    predictions: [N] predicted answers, aligned with `references`.

  Returns:
    `accuracy`, `closed_accuracy`, `open_accuracy` (None where the group is empty) and the counts
    `n`, `n_closed`, `n_open`, `correct`, `closed_correct`, `open_correct`.
  """
  if len(references) != len(predictions):
    raise ValueError(
        f"exact_match_accuracy: {len(references)} references but {len(predictions)} predictions")
  n_closed = closed_correct = n_open = open_correct = 0
  for reference, prediction in zip(references, predictions):
    ref = normalize_answer(reference)
    correct = ref == normalize_answer(prediction)
    if ref in CLOSED_ANSWERS:
      n_closed += 1
      closed_correct += correct
    else:
      n_open += 1
      open_correct += correct

  def ratio(numerator: int, denominator: int) -> Optional[float]:
    return numerator / denominator if denominator else None

  return {
      "accuracy": ratio(closed_correct + open_correct, n_closed + n_open),
      "closed_accuracy": ratio(closed_correct, n_closed),
      "open_accuracy": ratio(open_correct, n_open),
      "n": n_closed + n_open,
      "n_closed": n_closed,
      "n_open": n_open,
      "correct": closed_correct + open_correct,
      "closed_correct": closed_correct,
      "open_correct": open_correct,
  }
