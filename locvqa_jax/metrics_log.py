"""Training metrics: JSON lines, TensorBoard events (tensorboardX), a progress bar and a plot.

`W/metrics.jsonl` holds one JSON object per logged step, `{"step": 10, "train/loss": ...}`, and
is appended to on resume. TensorBoard event files go to `W/tb/`. Only process 0 writes.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping

import numpy as np


def _to_float(value: Any) -> float | None:
  try:
    value = float(np.asarray(value))
  except (TypeError, ValueError):
    return None
  return value


class MetricWriter:
  """Writes scalar metrics of process 0 to metrics.jsonl and TensorBoard; shows a progress bar."""

  def __init__(self, workdir: str, total_steps: int, initial_step: int = 0,
               enabled: bool = True, progress: bool = True):
    self.workdir = workdir
    self.enabled = enabled
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    self._bar = None
    if not enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    from tensorboardX import SummaryWriter  # Imported lazily: only process 0 needs it.
    self._tb = SummaryWriter(os.path.join(workdir, "tb"))
    if progress:
      from tqdm import tqdm
      self._bar = tqdm(total=total_steps, initial=initial_step, unit="step", dynamic_ncols=True,
                       desc="train")

  def write(self, step: int, metrics: Mapping[str, Any]) -> None:
    """Logs scalar metrics at a step (non-scalars are skipped)."""
    if not self.enabled:
      return
    row = {"step": int(step)}
    for key, value in metrics.items():
      value = _to_float(value)
      if value is None:
        continue
      row[key] = value if math.isfinite(value) else str(value)
      if math.isfinite(value):
        self._tb.add_scalar(key, value, int(step))
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")

  def advance(self, step: int, postfix: Mapping[str, Any] | None = None) -> None:
    """Moves the progress bar to `step` (rate and ETA come from tqdm)."""
    if self._bar is None:
      return
    self._bar.update(step - self._bar.n)
    if postfix:
      self._bar.set_postfix({k: f"{float(v):.4g}" for k, v in postfix.items()}, refresh=False)

  def note(self, text: str) -> None:
    """Prints a line without breaking the progress bar."""
    if not self.enabled:
      return
    if self._bar is not None:
      self._bar.write(text)
    else:
      print(text, flush=True)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
    if self._tb is not None:
      self._tb.close()


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def plot_curves(workdir: str, filename: str = "training_curves.png") -> str | None:
  """Plots every logged scalar against step, one panel per metric, into W/<filename>."""
  rows = read_metrics(workdir)
  series: dict[str, tuple[list[int], list[float]]] = {}
  for row in rows:
    for key, value in row.items():
      if key == "step" or not isinstance(value, (int, float)):
        continue
      xs, ys = series.setdefault(key, ([], []))
      xs.append(row["step"])
      ys.append(value)
  if not series:
    return None
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  keys = sorted(series)
  cols = min(4, len(keys))
  nrows = math.ceil(len(keys) / cols)
  fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3 * nrows), squeeze=False)
  for ax, key in zip(axes.flat, keys):
    xs, ys = series[key]
    ax.plot(xs, ys, marker="." if len(xs) < 30 else None)
    ax.set_title(key, fontsize=9)
    ax.set_xlabel("step", fontsize=8)
    ax.tick_params(labelsize=7)
  for ax in list(axes.flat)[len(keys):]:
    ax.axis("off")
  fig.tight_layout()
  out = os.path.join(workdir, filename)
  fig.savefig(out, dpi=100)
  plt.close(fig)
  return out
