"""Tests of EKAID-style exact-match accuracy."""

import pytest

from locvqa_jax.evaluation import accuracy


def test_closed_open_split():
  refs = ["yes", "no", "no", "PA view", "small", "left lung area"]
  preds = ["yes", "yes", "no", "pa view ", "moderate", "right lung area"]
  m = accuracy.exact_match_accuracy(refs, preds)
  assert (m["n"], m["n_closed"], m["n_open"]) == (6, 3, 3)
  assert m["closed_accuracy"] == pytest.approx(2 / 3)
  assert m["open_accuracy"] == pytest.approx(1 / 3)
  assert m["accuracy"] == pytest.approx(3 / 6)


def test_empty_groups_are_none():
  m = accuracy.exact_match_accuracy(["yes"], ["yes"])
  assert m["closed_accuracy"] == 1.0 and m["open_accuracy"] is None


def test_difference_questions_are_skipped():
  assert not accuracy.is_exact_match_question("what has changed compared to the reference image?")
  assert not accuracy.is_exact_match_question("What has changed in the left lung area?")
  assert accuracy.is_exact_match_question("is there pneumothorax?")
