"""Sweep axes, their product, and the config string and overrides each point runs with.

An axis is one `--grid TARGET=V1,V2,...`; TARGET says what each value sets:

  KEY                 a `--config.KEY=value` override of the sweep's config
                      (e.g. `loss.masked_pred_prob=0,0.25`)
  arg:NAME            the config file's own argument (`configs/X.py:NAME=value`), for what only
                      the config string can change (e.g. `arg:tasks=cap+aref+gcap+caref,cap`,
                      `arg:res=224,448`)
  then:KEY, then:arg:NAME   the same for the `--then` (fine-tuning) config

Values are split at commas outside brackets and quotes, so `input.task_weights=(1,2),(2,1)` is
two values. Each value is kept as written for the command line (the trainer casts it to the
config entry's type) and typed (int, float, bool, tuple, else str) for the tables and plot.
A preset axis (presets.py) may set several targets per value (e.g. the resolution of both
stages) and give each value a label.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
import re
from typing import Any, Mapping, Optional, Sequence

from locvqa_jax import config as config_lib

STAGE_PREFIX = "then:"
ARG_PREFIX = "arg:"


@dataclasses.dataclass(frozen=True)
class Setting:
  """One thing a point sets: an override or a config argument of one stage."""
  stage: int  # 0: the sweep's config; 1: the --then config.
  kind: str   # 'override' (--config.KEY=raw) or 'arg' (configs/X.py:KEY=raw).
  key: str
  raw: str

  @property
  def target(self) -> str:
    return ((STAGE_PREFIX if self.stage else "") + (ARG_PREFIX if self.kind == "arg" else "")
            + self.key)


@dataclasses.dataclass(frozen=True)
class Axis:
  """One swept dimension: its column name and, per value, a label, a typed value, settings."""
  name: str
  labels: tuple[str, ...]
  values: tuple[Any, ...]
  settings: tuple[tuple[Setting, ...], ...]


@dataclasses.dataclass(frozen=True)
class Point:
  """One combination of axis values."""
  index: int
  name: str                 # Directory name, e.g. 'masked_pred_prob-0.25__res-224'.
  labels: Mapping[str, str]  # Axis name -> label.
  values: Mapping[str, Any]  # Axis name -> typed value.
  settings: tuple[Setting, ...]


def typed(raw: str) -> Any:
  """'3' -> 3, '0.25' -> 0.25, 'true' -> True, '(1, 2)' -> (1, 2); anything else stays a str."""
  if raw.strip().lower() in ("true", "false"):
    return raw.strip().lower() == "true"
  try:
    value = ast.literal_eval(raw)
  except (ValueError, SyntaxError):
    return raw
  return value if isinstance(value, (int, float, tuple, list, str)) else raw


def split_values(text: str) -> list[str]:
  """Splits at commas outside (), [], {} and quotes; raises on unbalanced brackets."""
  out, depth, quote, start = [], 0, "", 0
  for i, ch in enumerate(text):
    if quote:
      quote = "" if ch == quote else quote
    elif ch in "'\"":
      quote = ch
    elif ch in "([{":
      depth += 1
    elif ch in ")]}":
      depth -= 1
      if depth < 0:
        raise ValueError(f"unbalanced '{ch}' in {text!r}")
    elif ch == "," and depth == 0:
      out.append(text[start:i].strip())
      start = i + 1
  if depth or quote:
    raise ValueError(f"unclosed bracket or quote in {text!r}")
  out.append(text[start:].strip())
  return out


def parse_target(target: str) -> tuple[int, str, str]:
  """'then:arg:res' -> (1, 'arg', 'res'); 'loss.masked_pred_prob' -> (0, 'override', ...)."""
  stage, kind, key = 0, "override", target.strip()
  if key.startswith(STAGE_PREFIX):
    stage, key = 1, key[len(STAGE_PREFIX):]
  if key.startswith(ARG_PREFIX):
    kind, key = "arg", key[len(ARG_PREFIX):]
  if key.startswith("config."):
    key = key[len("config."):]
  if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", key):
    raise ValueError(f"{target!r} is not a config key (KEY, arg:NAME, then:KEY, then:arg:NAME)")
  if kind == "arg" and "." in key:
    raise ValueError(f"{target!r}: a config argument has no dots (arg:NAME)")
  return stage, kind, key


def parse_setting(text: str) -> Setting:
  """'TARGET=VALUE' (one value) -> Setting."""
  target, eq, raw = text.partition("=")
  if not eq:
    raise ValueError(f"{text!r}: expected TARGET=VALUE")
  return Setting(*parse_target(target), raw.strip())


def parse_axis(spec: str) -> Axis:
  """'TARGET=V1,V2,...' (one --grid) -> Axis; raises ValueError naming the spec."""
  target, eq, raw = spec.partition("=")
  if not eq or not raw.strip():
    raise ValueError(f"--grid {spec!r}: expected TARGET=V1,V2,... (e.g. "
                     "loss.masked_pred_prob=0,0.25 or arg:tasks=cap+aref+gcap+caref,cap)")
  try:
    stage, kind, key = parse_target(target)
    raws = split_values(raw)
  except ValueError as e:
    raise ValueError(f"--grid {spec!r}: {e}") from None
  if any(not r for r in raws):
    raise ValueError(f"--grid {spec!r}: an empty value")
  if len(set(raws)) != len(raws):
    raise ValueError(f"--grid {spec!r}: a value is repeated")
  name = Setting(stage, kind, key, "").target.replace(ARG_PREFIX, "")
  return Axis(name, tuple(raws), tuple(typed(r) for r in raws),
              tuple((Setting(stage, kind, key, r),) for r in raws))


def _short_names(axes: Sequence[Axis]) -> list[str]:
  """Last key component ('masked_pred_prob'; 'ft.' marks the --then stage), the whole key where
  two axes would collide."""
  def short(axis: Axis, full: bool) -> str:
    then = axis.name.startswith(STAGE_PREFIX)
    key = axis.name[len(STAGE_PREFIX):] if then else axis.name
    return ("ft." if then else "") + (key if full else key.rsplit(".", 1)[-1])
  names = [short(a, False) for a in axes]
  return [short(a, True) if names.count(n) > 1 else n for a, n in zip(axes, names)]


def _safe(text: str) -> str:
  # Commas, colons and '=' would break the config strings that name these directories.
  return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-") or "x"


def product(axes: Sequence[Axis]) -> list[Point]:
  """Every combination of the axes' values, the first axis varying slowest."""
  names = [a.name for a in axes]
  if len(set(names)) != len(names):
    raise ValueError(f"an axis is given twice: {names}")
  short = _short_names(axes)
  points = []
  for index, combo in enumerate(itertools.product(*(range(len(a.labels)) for a in axes))):
    labels = {a.name: a.labels[i] for a, i in zip(axes, combo)}
    name = "__".join(f"{_safe(s)}-{_safe(a.labels[i])}" for s, a, i in zip(short, axes, combo))
    points.append(Point(index, name or "base", labels,
                        {a.name: a.values[i] for a, i in zip(axes, combo)},
                        tuple(s for a, i in zip(axes, combo) for s in a.settings[i])))
  return points


def config_args(spec: str) -> dict[str, Optional[str]]:
  """'configs/X.py:a=1,b' -> {'a': '1', 'b': None} (None: a bare name, i.e. true)."""
  items: dict[str, Optional[str]] = {}
  for item in filter(None, spec.partition(":")[2].split(",")):
    key, eq, raw = item.partition("=")
    items[key.strip()] = raw if eq else None
  return items


def merge_args(spec: str, updates: Mapping[str, Optional[str]]) -> str:
  """'configs/X.py:a=1,b' + {'a': '2', 'c': '3'} -> 'configs/X.py:a=2,b,c=3' (order kept)."""
  path = spec.partition(":")[0]
  items = config_args(spec)
  items.update(updates)
  arg = ",".join(k if v is None else f"{k}={v}" for k, v in items.items())
  return f"{path}:{arg}" if arg else path


def stage_config(spec: str, settings: Sequence[Setting], stage: int,
                 extra_args: Mapping[str, str] = ()) -> tuple[str, list[tuple[str, str]]]:
  """(config string, [(key, raw) overrides]) of `stage` for a point's settings."""
  args = {s.key: s.raw for s in settings if s.stage == stage and s.kind == "arg"}
  args.update(dict(extra_args))
  overrides = [(s.key, s.raw) for s in settings if s.stage == stage and s.kind == "override"]
  return merge_args(spec, args), overrides


def check(spec: str, overrides: Sequence[tuple[str, str]], where: str) -> Any:
  """Loads the config with the overrides; a typo fails here, naming `where` and a suggestion."""
  try:
    return config_lib.load_config(spec, overrides)
  except (config_lib.ConfigError, ValueError, TypeError, KeyError) as e:
    raise config_lib.ConfigError(f"{where}: {e}") from None
