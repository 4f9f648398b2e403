"""Loads experiment configs: `configs/X.py:arg=value,...` plus `--config.key=value` overrides.

A config file defines `get_config(arg: str | None) -> ml_collections.ConfigDict` and usually
parses its argument string with `parse_arg`, which turns `variant=micro,res=128,runlocal` into a
ConfigDict whose values take the types of the declared defaults.

After the overrides are applied the config is locked, so a typo in a key fails at start with the
closest existing key named, instead of being silently ignored:

  unknown config key 'config.optim.lr' -- did you mean 'config.optax.learning_rate'?
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import os
import sys
from typing import Any, Iterable, Sequence

import ml_collections

ConfigDict = ml_collections.ConfigDict


class ConfigError(ValueError):
  """A config file, argument or override that cannot be applied."""


def _is_subsequence(short: str, long: str) -> bool:
  it = iter(long)
  return all(ch in it for ch in short)


def _initials(name: str) -> str:
  return "".join(word[:1] for word in name.split("_"))


def _leaf_score(query: str, candidate: str) -> float:
  """Similarity of two key names; abbreviations ('lr' / 'learning_rate', 'res' / 'resolution')
  count as close in either direction."""
  score = difflib.SequenceMatcher(None, query, candidate).ratio()
  short, long = sorted((query, candidate), key=len)
  if len(short) > 1 and "_" in long and short == _initials(long):
    score = max(score, 0.9)
  elif len(short) > 2 and long.startswith(short):
    score = max(score, 0.8)
  elif len(short) > 1 and _is_subsequence(short, long):
    score = max(score, 0.6)
  return score


def _suggest(name: str, candidates: Iterable[str]) -> str:
  """' -- did you mean 'x'?' for the candidate closest to name, the last key weighing most."""
  parent, _, leaf = name.rpartition(".")
  best, best_score = None, 0.45
  for cand in candidates:
    c_parent, _, c_leaf = cand.rpartition(".")
    score = (0.3 * difflib.SequenceMatcher(None, parent, c_parent).ratio()
             + 0.7 * _leaf_score(leaf, c_leaf))
    if score > best_score:
      best, best_score = cand, score
  return f" -- did you mean '{best}'?" if best else ""


def _parse_literal(text: str) -> Any:
  """'3' -> 3, '1e-4' -> 1e-4, 'true' -> True, '(1, 2)' -> (1, 2), anything else stays a string."""
  lowered = text.strip().lower()
  if lowered in ("true", "false"):
    return lowered == "true"
  if lowered in ("none", "null"):
    return None
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def _coerce(value: Any, like: Any, where: str) -> Any:
  """Casts a parsed value to the type of the existing default `like`."""
  if like is None or isinstance(like, ConfigDict):
    return value
  if isinstance(like, bool):
    if isinstance(value, bool):
      return value
    raise ConfigError(f"{where}: expected true/false, got {value!r}")
  if isinstance(like, int):
    if isinstance(value, int) and not isinstance(value, bool):
      return value
    if isinstance(value, float) and value.is_integer():
      return int(value)
    raise ConfigError(f"{where}: expected an int, got {value!r}")
  if isinstance(like, float):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
      return float(value)
    raise ConfigError(f"{where}: expected a float, got {value!r}")
  if isinstance(like, str):
    return value if isinstance(value, str) else str(value)
  if isinstance(like, (tuple, list)):
    if isinstance(value, (tuple, list)):
      return type(like)(value)
    if isinstance(value, str):
      return type(like)(v for v in value.split("+") if v)
    return type(like)([value])
  return value


def parse_arg(arg: str | None, **defaults: Any) -> ConfigDict:
  """Parses a config file's argument string against declared defaults.

  Args:
    arg: e.g. 'variant=micro,res=128,runlocal' (a bare name means True); None or '' for defaults.
    **defaults: every allowed argument and its default; the default's type is the value's type.

  Returns:
    A locked ConfigDict with one entry per default.
  """
  out = ConfigDict(dict(defaults))
  for item in filter(None, (arg or "").split(",")):
    key, eq, raw = item.partition("=")
    key = key.strip()
    if key not in defaults:
      raise ConfigError(f"unknown config argument '{key}' in '{arg}'{_suggest(key, defaults)}; "
                        f"allowed: {', '.join(sorted(defaults))}")
    value = _parse_literal(raw) if eq else True
    if isinstance(defaults[key], str):
      value = raw if eq else value  # Keep '448' or 'B/16' as written when a string is expected.
    out[key] = _coerce(value, defaults[key], f"config argument '{key}'")
  out.lock()
  return out


def load_config_file(spec: str) -> ConfigDict:
  """Imports `path.py[:arg]` and returns `get_config(arg)`.

  Args:
    spec: 'configs/pretrain_locca.py:variant=micro,res=128' (the part after ':' is optional).
  """
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise ConfigError(f"config file '{path}' (from --config={spec}) does not exist")
  name = "locvqa_config_" + os.path.splitext(os.path.basename(path))[0]
  module_spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(module_spec)
  sys.modules[name] = module
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ConfigError(f"config file '{path}' defines no get_config(arg)")
  config = module.get_config(arg or None)
  if not isinstance(config, ConfigDict):
    raise ConfigError(f"{path}: get_config must return an ml_collections.ConfigDict, "
                      f"got {type(config).__name__}")
  return config


def flat_keys(config: ConfigDict, prefix: str = "", leaves_only: bool = False) -> list[str]:
  """All dotted keys of a config ('optax', 'optax.b1', ...); only values if leaves_only."""
  keys = []
  for key, value in config.items():
    full = f"{prefix}{key}"
    is_dict = isinstance(value, ConfigDict)
    if not (is_dict and leaves_only):
      keys.append(full)
    if is_dict:
      keys.extend(flat_keys(value, full + ".", leaves_only))
  return keys


def apply_override(config: ConfigDict, key: str, raw: str) -> None:
  """Sets `config.<key>` from its string form, keeping the existing value's type.

  Raises:
    ConfigError: the key does not exist (with the closest existing key) or the value has the
      wrong type.
  """
  parts = key.split(".")
  node = config
  for i, part in enumerate(parts):
    if not isinstance(node, ConfigDict) or part not in node:
      known = ["config." + k for k in flat_keys(config, leaves_only=True)]
      raise ConfigError(f"unknown config key 'config.{key}'{_suggest('config.' + key, known)}")
    if i < len(parts) - 1:
      node = node[part]
  old = node[parts[-1]]
  value = _coerce(_parse_literal(raw), old, f"--config.{key}")
  if isinstance(old, str):
    value = raw
  with node.unlocked():
    node[parts[-1]] = value


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
  """Separates `--config.key=value` (or `--config.key value`) from the other arguments."""
  rest, overrides = [], []
  i = 0
  while i < len(argv):
    item = argv[i]
    if item.startswith("--config."):
      body = item[len("--config."):]
      if "=" in body:
        key, raw = body.split("=", 1)
      elif i + 1 < len(argv):
        key, raw = body, argv[i + 1]
        i += 1
      else:
        raise ConfigError(f"{item} has no value")
      overrides.append((key, raw))
    else:
      rest.append(item)
    i += 1
  return rest, overrides


def load_config(spec: str, overrides: Sequence[tuple[str, str]] = ()) -> ConfigDict:
  """Loads a config file, applies `(key, value)` overrides and locks the result."""
  config = load_config_file(spec)
  config.lock()
  for key, raw in overrides:
    apply_override(config, key, raw)
  return config


def check_required(config: ConfigDict, keys: Iterable[str], who: str) -> None:
  """Fails at start when a config lacks keys a component reads, naming them all."""
  known = set(flat_keys(config))
  missing = [k for k in keys if k not in known]
  if missing:
    raise ConfigError(f"{who} needs config keys that are missing: "
                      + ", ".join(f"'config.{k}'" for k in missing))
