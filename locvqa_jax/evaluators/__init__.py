"""Evaluators, looked up by `config.evals.<name>.type` as module `locvqa_jax.evaluators.<type>`.

An evaluator module defines `Evaluator(*, config, eval_config, model, module, pipeline,
tokenizer, mesh)` with attributes `every_steps` (0: only at the end) and `split`, and
`run(params, step, workdir) -> dict[str, float]`. Stage 2 adds a module; the trainer is not
edited.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def get(name: str) -> ModuleType:
  full = name if "." in name else f"{__name__}.{name}"
  try:
    module = importlib.import_module(full)
  except ModuleNotFoundError as e:
    if e.name != full:
      raise
    raise ModuleNotFoundError(f"config.evals: evaluator type '{name}' names no module "
                              f"(expected locvqa_jax/evaluators/{name}.py)") from e
  if not hasattr(module, "Evaluator"):
    raise AttributeError(f"evaluator module {full} defines no Evaluator class")
  return module
