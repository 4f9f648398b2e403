"""The paper's three pretraining ablations as ready sweep presets (`--preset NAME`).

  task_mixture         all four tasks vs dropping each location task (AREF, GCAP, CAREF) vs
                       captioning only: the config argument `tasks` (5 points).
  resolution           224 vs 448 px: the config argument `res`, of the fine-tuning stage too
                       when there is one, so the encoder is used at the side it learned (2 points).
  parallel_prediction  share of examples trained in parallel-prediction mode,
                       `loss.masked_pred_prob` = 0, 0.25 (the paper's choice), 0.5, 0.75 (4 points).

A preset gives the axes (and the metrics shown by default); the sweep's `--config` (default
configs/pretrain_locca.py) is the base every point changes, `--grid` adds axes, `--seeds`
repeats each point and `--then configs/diff_vqa.py` adds the difference-VQA stage. Settings of
the `then:` stage are dropped when there is no `--then`.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from locvqa_jax.sweep import grid

DEFAULT_CONFIG = "configs/pretrain_locca.py"


@dataclasses.dataclass(frozen=True)
class Preset:
  """Axes as (name, [(label, {target: raw value})]) and the default metrics."""
  description: str
  axes: tuple[tuple[str, tuple[tuple[str, dict[str, str]], ...]], ...]
  metrics: tuple[str, ...]


_ALL_TASKS = "cap+aref+gcap+caref"

PRESETS = {
    "task_mixture": Preset(
        "all four tasks vs dropping each location task vs captioning only",
        (("tasks", (("all", {"arg:tasks": _ALL_TASKS}),
                    ("no_aref", {"arg:tasks": "cap+gcap+caref"}),
                    ("no_gcap", {"arg:tasks": "cap+aref+caref"}),
                    ("no_caref", {"arg:tasks": "cap+aref+gcap"}),
                    ("cap_only", {"arg:tasks": "cap"}))),),
        # The total validation loss sums different tasks per point: compare captioning.
        ("pre:val/loss_cap", "pre:val/cap_cider")),
    "resolution": Preset(
        "encoder resolution 224 vs 448 px",
        (("res", tuple((str(r), {"arg:res": str(r), "then:arg:res": str(r)})
                       for r in (224, 448))),),
        ("pre:val/loss", "pre:val/cap_cider")),
    "parallel_prediction": Preset(
        "parallel-prediction ratio (loss.masked_pred_prob)",
        (("masked_pred_prob", tuple((p, {"loss.masked_pred_prob": p})
                                    for p in ("0", "0.25", "0.5", "0.75"))),),
        ("pre:val/loss", "pre:val/cap_cider")),
}


def get(name: str) -> Preset:
  if name not in PRESETS:
    raise ValueError(f"--preset {name!r}: expected one of {', '.join(sorted(PRESETS))}")
  return PRESETS[name]


def axes(name: str, with_then: bool) -> list[grid.Axis]:
  """The preset's axes; `then:` settings only when the sweep has a --then stage."""
  out = []
  for axis_name, values in get(name).axes:
    labels, typed, settings = [], [], []
    for label, targets in values:
      labels.append(label)
      typed.append(grid.typed(label))
      parsed = [grid.parse_setting(f"{t}={raw}") for t, raw in targets.items()]
      settings.append(tuple(s for s in parsed if with_then or s.stage == 0))
    out.append(grid.Axis(axis_name, tuple(labels), tuple(typed), tuple(settings)))
  return out


def describe() -> str:
  """One line per preset, for --help."""
  return "; ".join(f"{n}: {p.description}" for n, p in PRESETS.items())


def metric_defaults(name: str, eval_metrics: Sequence[str]) -> list[str]:
  """The preset's pretraining metrics plus the evaluation's when there is a --then stage."""
  return list(get(name).metrics) + list(eval_metrics)
