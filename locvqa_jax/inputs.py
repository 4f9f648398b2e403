"""Input sources of the trainer, looked up by `config.input.pipeline`.

A source provides three functions, all given the whole (locked) config:

  build_tokenizer(config) -> tokenizer (with .vocab_size and .to_bytes())
  train_iterator(config, tokenizer, *, global_batch_size, seed) -> iterator of this process's
      batches (dicts of numpy arrays, CONTRACTS D) with get_state() / set_state()
  eval_batches(config, tokenizer, *, split, global_batch_size) -> one finite pass of this
      process's batches, each with `valid: [b] int32` (0 on padding rows)

Registered here: 'pretrain' (locvqa_jax.data.pipeline over the built TFDS datasets). Stage 2
registers its own source with `register`; any other name is imported as a module that defines
the three functions (how the tests plug in a synthetic source).
"""

from __future__ import annotations

import importlib
from types import SimpleNamespace
from typing import Any, Callable

import ml_collections

_REGISTRY: dict[str, Any] = {}


def register(name: str, *, build_tokenizer: Callable[..., Any], train_iterator: Callable[..., Any],
             eval_batches: Callable[..., Any]) -> None:
  _REGISTRY[name] = SimpleNamespace(build_tokenizer=build_tokenizer,
                                    train_iterator=train_iterator, eval_batches=eval_batches)


def get(name: str) -> Any:
  if name in _REGISTRY:
    return _REGISTRY[name]
  try:
    module = importlib.import_module(name)
  except ModuleNotFoundError as e:
    if e.name != name:
      raise
    raise KeyError(f"config.input.pipeline={name!r}: not a registered input source "
                   f"({sorted(_REGISTRY)}, locvqa_jax/inputs.py) nor an importable module") from e
  missing = [f for f in ("build_tokenizer", "train_iterator", "eval_batches")
             if not hasattr(module, f)]
  if missing:
    raise AttributeError(f"input module {name} lacks {', '.join(missing)}")
  return module


def _pretrain_tokenizer(config: ml_collections.ConfigDict) -> Any:
  from locvqa_jax import tokenizer as tokenizer_lib
  if not config.tokenizer:
    raise ValueError("config.tokenizer is empty: train one with `python -m locvqa_jax.tokenizer "
                     "--data_dir D --config r128 --out W/tokenizer.model` and pass its path")
  return tokenizer_lib.Tokenizer.from_file(config.tokenizer)


def _pretrain_train_iterator(config: ml_collections.ConfigDict, tokenizer: Any, *,
                             global_batch_size: int, seed: int) -> Any:
  from locvqa_jax.data import pipeline
  loader = pipeline.pretrain_loader(config.input, tokenizer, split="train",
                                    global_batch_size=global_batch_size, train=True, seed=seed)
  return iter(loader)


def _pretrain_eval_batches(config: ml_collections.ConfigDict, tokenizer: Any, *, split: str,
                           global_batch_size: int) -> Any:
  from locvqa_jax.data import pipeline
  return pipeline.pretrain_loader(config.input, tokenizer, split=split,
                                  global_batch_size=global_batch_size, train=False)


register("pretrain", build_tokenizer=_pretrain_tokenizer, train_iterator=_pretrain_train_iterator,
         eval_batches=_pretrain_eval_batches)
