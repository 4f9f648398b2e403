"""Scoring of VQA answers: NLG metrics, BERTScore, finding-level scores and exact-match accuracy.

`score_predictions(records) -> dict` runs every metric group of `registry` overall and per
question type; `python -m locvqa_jax.evaluate` is its command line.
"""

from locvqa_jax.evaluation.records import Prediction, PredictionsFormatError, read_jsonl
from locvqa_jax.evaluation.report import format_metrics
from locvqa_jax.evaluation.scoring import score_predictions

__all__ = [
    "Prediction",
    "PredictionsFormatError",
    "format_metrics",
    "read_jsonl",
    "score_predictions",
]
