"""Prediction records: one scored question, and reading them from predictions.jsonl.

A predictions file has one JSON object per line with at least `question_type`, `question`,
`reference` and `prediction` (strings); `id` is optional; any other keys are kept in `extras`
for metrics that need more than text (e.g. boxes).
Key names are strict: a missing key is an error naming the file, the line and the key.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Iterable, Mapping, Optional, Union

REQUIRED_KEYS = ("question_type", "question", "reference", "prediction")


class PredictionsFormatError(ValueError):
  """A predictions record is malformed."""


@dataclasses.dataclass(frozen=True)
class Prediction:
  """One question with its reference and predicted answer; `extras` holds any other keys."""
  question_type: str
  question: str
  reference: str
  prediction: str
  id: Optional[Any] = None
  extras: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def from_mapping(record: Mapping[str, Any], where: str) -> Prediction:
  """Validates one record; `where` (e.g. `preds.jsonl line 3`) prefixes every error."""
  if not isinstance(record, Mapping):
    raise PredictionsFormatError(
        f"{where}: expected a JSON object, got {type(record).__name__}")
  missing = [k for k in REQUIRED_KEYS if k not in record]
  if missing:
    raise PredictionsFormatError(
        f"{where}: missing key{'s' if len(missing) > 1 else ''} "
        f"{', '.join(repr(k) for k in missing)} (required: {', '.join(REQUIRED_KEYS)}; "
        f"found: {', '.join(repr(k) for k in record) or 'none'})")
  for key in REQUIRED_KEYS:
    if not isinstance(record[key], str):
      raise PredictionsFormatError(
          f"{where}: key {key!r} must be a string, got {type(record[key]).__name__} "
          f"{record[key]!r}")
  extras = {k: v for k, v in record.items() if k not in REQUIRED_KEYS and k != "id"}
  return Prediction(record["question_type"], record["question"], record["reference"],
                    record["prediction"], record.get("id"), extras)


def as_predictions(records: Iterable[Union[Prediction, Mapping[str, Any]]]) -> list[Prediction]:
  """Accepts Prediction objects or dicts with the required keys (errors name the record index)."""
  return [
      r if isinstance(r, Prediction) else from_mapping(r, f"record {i}")
      for i, r in enumerate(records)
  ]


def read_jsonl(path: Union[str, pathlib.Path]) -> list[Prediction]:
  """Reads a predictions file; blank lines are skipped, line numbers are 1-based."""
  predictions = []
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, start=1):
      if not line.strip():
        continue
      where = f"{path} line {number}"
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise PredictionsFormatError(f"{where}: not valid JSON ({e.msg})") from None
      predictions.append(from_mapping(record, where))
  if not predictions:
    raise PredictionsFormatError(f"{path}: no predictions (the file is empty)")
  return predictions
