"""Plain-text tables of a metrics dict (the output of `score_predictions`)."""

from __future__ import annotations

from typing import Any, Optional, Sequence

# (group, key, column title) of the per-type table; groups absent for a type print `-`.
_TYPE_COLUMNS = (
    ("exact_match", "accuracy", "acc"),
    ("exact_match", "closed_accuracy", "closed"),
    ("exact_match", "open_accuracy", "open"),
    ("nlg", "bleu_4", "BLEU-4"),
    ("nlg", "meteor", "METEOR"),
    ("nlg", "rouge_l", "ROUGE-L"),
    ("nlg", "cider", "CIDEr"),
    ("bertscore", "f1", "BERTSc"),
    ("findings", "finding_f1", "find-F1"),
    ("findings", "false_change_rate", "false-chg"),
)

_DIFFERENCE_COLUMNS = (
    ("nlg", "bleu_1", "BLEU-1"),
    ("nlg", "bleu_2", "BLEU-2"),
    ("nlg", "bleu_3", "BLEU-3"),
    ("nlg", "bleu_4", "BLEU-4"),
    ("nlg", "meteor", "METEOR"),
    ("nlg", "rouge_l", "ROUGE-L"),
    ("nlg", "cider", "CIDEr"),
    ("bertscore", "f1", "BERTScore"),
    ("findings", "finding_precision", "find-P"),
    ("findings", "finding_recall", "find-R"),
    ("findings", "finding_f1", "find-F1"),
    ("findings", "false_change_rate", "false-chg"),
)


def _fmt(value: Optional[Any]) -> str:
  if value is None:
    return "-"
  if isinstance(value, float):
    return f"{value:.4f}"
  return str(value)


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  """Left-aligned first column, right-aligned others, a rule under the header."""
  widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

  def line(cells: Sequence[str]) -> str:
    return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                     for i, (c, w) in enumerate(zip(cells, widths)))

  return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _cells(scores: dict, columns) -> list[str]:
  return [_fmt(scores.get(group, {}).get(key)) for group, key, _ in columns]


def format_grounding(scores: dict) -> str:
  """The grounding group's table: CAREF boxes beside the per-finding mean training box."""
  rows = [["CAREF boxes", _fmt(scores["mean_iou"]), _fmt(scores["acc50"])],
          ["mean training box", _fmt(scores["baseline_mean_iou"]),
           _fmt(scores["baseline_acc50"])]]
  return "\n".join([
      f"Grounding of named findings (boxes scored={scores['n_boxes']}, "
      f"no truth={scores['no_truth']}, no box={scores['no_box']}, records={scores['n']})",
      render_table(["boxes", "mean IoU", "acc@0.5"], rows)])


def format_metrics(metrics: dict) -> str:
  """Difference-question, grounding and per-question-type tables and the BERTScore line."""
  parts = []
  overall = metrics["overall"]
  if any(g in overall for g in ("nlg", "bertscore", "findings")):
    n = next(overall[g]["n"] for g in ("nlg", "bertscore", "findings") if g in overall)
    parts.append(f"Difference questions (n={n})")
    parts.append(render_table([c[2] for c in _DIFFERENCE_COLUMNS],
                              [_cells(overall, _DIFFERENCE_COLUMNS)]))
  if "grounding" in overall:
    parts.append("\n" + format_grounding(overall["grounding"]))
  rows = [[question_type, str(scores["n"]), *_cells(scores, _TYPE_COLUMNS)]
          for question_type, scores in metrics["per_question_type"].items()]
  if "exact_match" in overall:
    em = overall["exact_match"]
    rows.append(["all exact-match", str(em["n"]), _fmt(em["accuracy"]),
                 _fmt(em["closed_accuracy"]), _fmt(em["open_accuracy"])]
                + ["-"] * (len(_TYPE_COLUMNS) - 3))
  parts.append(f"\nPer question type (n={metrics['n']})")
  parts.append(render_table(["type", "n", *[c[2] for c in _TYPE_COLUMNS]], rows))
  if "bertscore" in metrics["settings"]:
    s = metrics["settings"]["bertscore"]
    parts.append(f"\nBERTScore model: {s['model']}, layer {s['layer']}/{s['num_hidden_layers']}, "
                 f"idf={s['idf']}, baseline rescaling={s['baseline_rescale']}")
  elif "bertscore" not in metrics["groups"]:
    parts.append("\nBERTScore: skipped (--no_bertscore)")
  return "\n".join(parts)
