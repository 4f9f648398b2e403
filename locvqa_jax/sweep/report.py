"""What a sweep collects from its finished runs: sweep.csv, sweep.md (mean ± std over seeds) and
sweep.png (the metrics against the first axis).

A metric is named `STAGE:KEY`:

  pre:KEY     the sweep's own config run: the last logged value of KEY in W/metrics.jsonl
              (locvqa_jax/metrics_log.py; e.g. `pre:val/loss`, `pre:val/caref_iou`)
  ft:KEY      the same for the --then run (e.g. `ft:val/loss`)
  test:PATH   the difference-VQA evaluation, W/eval/test_<step>/metrics.json written by
              `python -m locvqa_jax.evaluate --workdir W --split test`, PATH dotted into its
              nesting (e.g. `test:overall.exact_match.closed_accuracy`, `test:overall.nlg.cider`)

A bare KEY means `pre:KEY`. A value a run did not log stays empty in the CSV and is left out of
the mean.
"""

from __future__ import annotations

import csv
import glob
import json
import math
import os
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from locvqa_jax.sweep import grid

STAGES = ("pre", "ft")
EVAL_METRICS = ("test:overall.exact_match.closed_accuracy",
                "test:overall.exact_match.open_accuracy", "test:overall.nlg.cider")


def parse_metric(spec: str) -> tuple[str, str]:
  """'test:overall.nlg.cider' -> ('test', 'overall.nlg.cider'); 'val/loss' -> ('pre', ...)."""
  stage, sep, key = spec.partition(":")
  if not sep:
    return "pre", spec
  if not key:
    raise ValueError(f"--metrics {spec!r}: nothing after '{stage}:'")
  if stage not in STAGES and stage not in ("train", "validation", "test"):
    raise ValueError(f"--metrics {spec!r}: stage {stage!r} is not pre, ft or an evaluated split "
                     "(test, validation, train)")
  return stage, key


def final_logged(path: str) -> dict[str, float]:
  """{key: last logged value} of a metrics.jsonl (rows are appended in step order)."""
  out: dict[str, float] = {}
  if not os.path.exists(path):
    return out
  with open(path) as f:
    for line in f:
      line = line.strip()
      if not line:
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError:
        continue  # A line cut short by a killed run.
      out.update({k: v for k, v in row.items() if k != "step"})
  return out


def eval_metrics_file(workdir: str, split: str) -> Optional[str]:
  """The newest W/eval/<split>_<step>/metrics.json, or None."""
  files = glob.glob(os.path.join(workdir, "eval", f"{split}_*", "metrics.json"))
  return max(files, key=os.path.getmtime) if files else None


def _read_json(path: Optional[str]) -> dict[str, Any]:
  if not path:
    return {}
  with open(path) as f:
    return json.load(f)


def _dig(tree: Mapping[str, Any], path: str) -> Any:
  if path in tree:
    return tree[path]
  node: Any = tree
  for part in path.split("."):
    if not isinstance(node, Mapping) or part not in node:
      return None
    node = node[part]
  return node


def _number(value: Any) -> Optional[float]:
  if isinstance(value, bool) or not isinstance(value, (int, float, str)):
    return None
  try:
    value = float(value)
  except ValueError:
    return None
  return value if math.isfinite(value) else None


def read_metrics(workdirs: Mapping[str, str], metrics: Sequence[str]) -> dict[str, Optional[float]]:
  """{metric: value or None} from the stage workdirs ({'pre': W1, 'ft': W2})."""
  logged: dict[str, dict[str, float]] = {}
  evaluated: dict[str, Any] = {}
  out = {}
  last = workdirs.get("ft") or workdirs.get("pre")
  for spec in metrics:
    stage, key = parse_metric(spec)
    if stage in STAGES:
      if stage not in logged:
        w = workdirs.get(stage)
        logged[stage] = final_logged(os.path.join(w, "metrics.jsonl")) if w else {}
      out[spec] = _number(logged[stage].get(key))
    else:
      if stage not in evaluated:
        evaluated[stage] = _read_json(eval_metrics_file(last, stage) if last else None)
      out[spec] = _number(_dig(evaluated[stage], key))
  return out


def write_csv(path: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
  """One row per point x seed; missing values are empty cells."""
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(columns)
    for row in rows:
      writer.writerow(["" if row.get(c) is None else row[c] for c in columns])


def summarize(values: Sequence[Optional[float]]) -> tuple[int, Optional[float], Optional[float]]:
  """(n, mean, sample std) of the present values; std None below two values."""
  present = np.asarray([v for v in values if v is not None], np.float64)
  if not len(present):
    return 0, None, None
  std = float(present.std(ddof=1)) if len(present) > 1 else None
  return len(present), float(present.mean()), std


def _fmt(mean: Optional[float], std: Optional[float]) -> str:
  if mean is None:
    return "n/a"
  return f"{mean:.4g}" if std is None else f"{mean:.4g} ± {std:.2g}"


def groups(rows: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
  """The rows of each point (all its seeds), in first-seen order."""
  by_point: dict[str, list[Mapping[str, Any]]] = {}
  for row in rows:
    by_point.setdefault(row["point"], []).append(row)
  return list(by_point.values())


def markdown(rows: Sequence[Mapping[str, Any]], axis_names: Sequence[str],
             metrics: Sequence[str], title: str = "") -> str:
  """A Markdown table: one line per point, `mean ± std` over its finished seeds."""
  header = list(axis_names) + ["seeds"] + list(metrics)
  lines = ([f"{title}\n"] if title else []) + [
      "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for point_rows in groups(rows):
    done = [r for r in point_rows if r.get("status") == "done"]
    cells = [str(point_rows[0].get(f"{a}", "")) for a in axis_names]
    cells.append(f"{len(done)}/{len(point_rows)}")
    for m in metrics:
      _, mean, std = summarize([r.get(m) for r in done])
      cells.append(_fmt(mean, std))
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def plot(path: str, rows: Sequence[Mapping[str, Any]], axes: Sequence[grid.Axis],
         metrics: Sequence[str]) -> bool:
  """One panel per metric (three per row) against the first axis, one line per value of the
  other axes, error bars = std over seeds. Returns False (and writes nothing) when no metric has a value."""
  done = [r for r in rows if r.get("status") == "done"]
  if not any(r.get(m) is not None for r in done for m in metrics):
    return False
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  first = axes[0] if axes else None
  xs = list(first.values) if first else []
  numeric = bool(xs) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
  position = {label: (x if numeric else i) for i, (label, x) in enumerate(zip(first.labels, xs))
              } if first else {}
  cols = min(3, len(metrics))
  rows_n = -(-len(metrics) // cols)
  fig, panels = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.4 * rows_n), squeeze=False)
  for ax in panels.flat[len(metrics):]:
    ax.set_visible(False)
  for ax, metric in zip(panels.flat, metrics):
    lines: dict[str, list[tuple[float, Optional[float], Optional[float]]]] = {}
    for point_rows in groups(done):
      row = point_rows[0]
      rest = ", ".join(f"{a.name}={row[a.name]}" for a in axes[1:])
      _, mean, std = summarize([r.get(metric) for r in point_rows])
      x = position[row[first.name]] if first else 0
      if mean is not None:
        lines.setdefault(rest, []).append((x, mean, std))
    for label, pts in lines.items():
      pts.sort()
      ax.errorbar([p[0] for p in pts], [p[1] for p in pts],
                  yerr=[p[2] or 0.0 for p in pts], marker="o", capsize=3, label=label or None)
    if first and not numeric:
      ax.set_xticks(range(len(xs)), list(first.labels), rotation=20)
    ax.set_xlabel(first.name if first else "")
    ax.set_title(metric, fontsize=9)
    ax.grid(alpha=0.3)
    if len(lines) > 1:
      ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return True
