"""Evaluation of a trained difference-VQA run, with its baselines beside it.

  python -m locvqa_jax.evaluate --workdir W [--split test] [--step N] [--blind_workdir W2]

decodes every question of the split with the checkpoint kept as best on validation (or
`--step N`, or the latest with `--checkpoint latest`), writes W/eval/<split>_<step>/
predictions.jsonl (id, row_index, question_type, question, reference, prediction, study ids)
and metrics.json (`score_predictions`), then scores two baselines by the same function:

  most_frequent  the most frequent training answer of the same question string (the Diff-VQA
                 questions are templates), else of the question type;
  blind          the run in --blind_workdir (configs/diff_vqa.py:blind, same model and budget
                 without image tokens), decoded the same way.

and prints one table with the three side by side (metrics_<baseline>.json beside metrics.json).
With a blind run, the model's margins over it come with 95 % paired-bootstrap intervals
(evaluation/bootstrap.py; margins_blind.json).
With `grounding` (evaluate --grounding) the model's difference predictions also get CAREF
boxes for the findings they name and their true boxes (locvqa_jax/vqa_grounding.py), scored by
the `grounding` metric group beside the mean-box baseline.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import json
import os
from typing import Any, Optional, Sequence

import jax
import ml_collections
import numpy as np

from locvqa_jax import vqa_predict
from locvqa_jax import vqa_source
from locvqa_jax.evaluation.report import render_table

# (group, key, title) of the comparison table.
_ROWS = (
    ("difference", "nlg", "bleu_1", "BLEU-1"), ("difference", "nlg", "bleu_4", "BLEU-4"),
    ("difference", "nlg", "meteor", "METEOR"), ("difference", "nlg", "rouge_l", "ROUGE-L"),
    ("difference", "nlg", "cider", "CIDEr"), ("difference", "bertscore", "f1", "BERTScore F1"),
    ("difference", "findings", "finding_precision", "finding P"),
    ("difference", "findings", "finding_recall", "finding R"),
    ("difference", "findings", "finding_f1", "finding F1"),
    ("difference", "findings", "false_change_rate", "false-change rate"),
    ("overall", "exact_match", "closed_accuracy", "closed accuracy"),
    ("overall", "exact_match", "open_accuracy", "open accuracy"),
    ("overall", "exact_match", "accuracy", "exact-match accuracy"),
    ("difference", "grounding", "mean_iou", "grounding IoU"),
    ("difference", "grounding", "baseline_mean_iou", "grounding IoU, mean box"),
)


class Run:
  """A trained diff_vqa checkpoint: config, model, params (host numpy), tokenizer, step."""

  def __init__(self, workdir: str, step: Optional[int] = None, checkpoint: str = "best"):
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    from locvqa_jax import checkpointing  # pylint: disable=g-import-not-at-top
    from locvqa_jax import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
    from locvqa_jax.models import diff_vqa  # pylint: disable=g-import-not-at-top
    best_dir = checkpointing.checkpoint_dir(workdir, best=True)
    use_best = step is None and checkpoint == "best" and os.path.isdir(best_dir)
    directory = best_dir if use_best else checkpointing.checkpoint_dir(workdir)
    if not os.path.isdir(directory):
      raise FileNotFoundError(f"--workdir {workdir}: no checkpoints in {directory}")
    manager = ocp.CheckpointManager(directory, item_handlers={
        "state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()})
    steps = sorted(manager.all_steps())
    if not steps or (step is not None and step not in steps):
      raise FileNotFoundError(f"--workdir {workdir}: no checkpoint "
                              f"{'for step ' + str(step) if step is not None else ''} in "
                              f"{directory}; have {steps}")
    self.step = steps[-1] if step is None else step
    tree = manager.item_metadata(self.step)["state"]
    target = jax.tree.map(lambda m: np.empty(m.shape, m.dtype), tree)
    out = manager.restore(self.step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
    manager.close()
    meta = out["meta"]
    self.workdir, self.kind = workdir, "best" if use_best else "step"
    self.config = ml_collections.ConfigDict(meta["config"])
    if self.config.get("model_name") != "diff_vqa":
      raise ValueError(f"--workdir {workdir} holds a {self.config.get('model_name')!r} run; "
                       "evaluate --workdir reads difference-VQA runs (configs/diff_vqa.py)")
    self.params = out["state"]["params"]
    self.model = diff_vqa.Model(**self.config.model.to_dict())
    self.tok = tokenizer_lib.Tokenizer.from_bytes(base64.b64decode(meta["tokenizer_b64"]))


def predict_split(run: Run, split: str, *, batch_size: int = 0, beam_size: int = 1,
                  length_penalty: float = 1.0, no_repeat_ngram_size: int = 0,
                  max_batches: int = 0, records: Optional[Sequence[Any]] = None,
                  progress: bool = True) -> list[dict[str, Any]]:
  """Prediction records (the evaluate format) for every question of `split`."""
  from locvqa_jax import sharding  # pylint: disable=g-import-not-at-top
  config = run.config
  batch_size = batch_size or config.evals.val.batch_size
  mesh = sharding.make_mesh(config.mesh)
  params = jax.device_put(run.params, sharding.replicated(mesh))
  decoder = vqa_predict.make_decoder(
      run.model, max_decode_len=config.input.max_answer_len + 1, beam_size=beam_size,
      length_penalty=length_penalty, no_repeat_ngram_size=no_repeat_ngram_size)
  records = vqa_source.open_records(config, split) if records is None else records
  batches = vqa_source.maybe_trim(config, vqa_source.loader(
      config, run.tok, split=split, global_batch_size=batch_size, train=False, records=records))
  rows = vqa_source.questions_by_row(records)
  preds = vqa_predict.predict(decoder, params, batches, run.tok, mesh=mesh, limit=max_batches,
                              progress=progress)
  return [_record(rows[p["row_index"]], p["row_index"], p["prediction"]) for p in preds]


def _record(row: dict[str, Any], row_index: int, prediction: str) -> dict[str, Any]:
  return {"id": row_index, "row_index": row_index, "question_type": row["question_type"],
          "question": row["question"], "reference": row["reference"], "prediction": prediction,
          "study_id": row["study_id"], "ref_id": row["ref_id"]}


def most_frequent_answers(train_records: Sequence[Any]):
  """(answer by question string, answer by question type) from the training split."""
  by_q, by_type = collections.defaultdict(collections.Counter), collections.defaultdict(
      collections.Counter)
  for row in vqa_source.questions_by_row(train_records).values():
    by_q[row["question"]][row["reference"]] += 1
    by_type[row["question_type"]][row["reference"]] += 1
  top = lambda counters: {k: c.most_common(1)[0][0] for k, c in counters.items()}
  return top(by_q), top(by_type)


def most_frequent_baseline(predictions: Sequence[dict[str, Any]],
                           train_records: Sequence[Any]) -> list[dict[str, Any]]:
  """The predictions with each answer replaced by the most frequent training answer.

  Grounding boxes belong to the model's answer, so they are left out.
  """
  by_q, by_type = most_frequent_answers(train_records)
  return [dict({k: v for k, v in p.items() if k != "grounding"},
               prediction=by_q.get(p["question"], by_type.get(p["question_type"], "")))
          for p in predictions]


def write_jsonl(path: str, records: Sequence[dict[str, Any]]) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    for r in records:
      f.write(json.dumps(r) + "\n")


def _value(metrics: dict, scope: str, group: str, key: str):
  if scope == "difference":
    scores = metrics["per_question_type"].get("difference", {})
  else:
    scores = metrics["overall"]
  return scores.get(group, {}).get(key)


def comparison_table(columns: dict[str, dict]) -> str:
  """One row per metric, one column per scored method (model, blind, most frequent)."""
  rows = []
  for scope, group, key, title in _ROWS:
    values = [_value(m, scope, group, key) for m in columns.values()]
    if all(v is None for v in values):
      continue
    rows.append([title] + ["-" if v is None else f"{v:.4f}" for v in values])
  return render_table(["metric", *columns], rows)


def evaluate_workdir(workdir: str, *, split: str = "test", step: Optional[int] = None,
                     checkpoint: str = "best", blind_workdir: Optional[str] = None,
                     beam_size: int = 1, length_penalty: float = 1.0,
                     no_repeat_ngram_size: int = 0, batch_size: int = 0, max_batches: int = 0,
                     score_kwargs: Optional[dict] = None, progress: bool = True,
                     records: Optional[dict[str, Sequence[Any]]] = None,
                     grounding: Optional[dict[str, Any]] = None) -> dict[str, Any]:
  """Decodes, scores, writes W/eval/<split>_<step>/ and returns {method: metrics}.

  With `grounding` (keyword arguments of vqa_grounding.ground_split, {} for its defaults), the
  model's difference predictions also get CAREF boxes and true boxes (`_ground`).
  """
  from locvqa_jax.evaluation import bootstrap  # pylint: disable=g-import-not-at-top
  from locvqa_jax.evaluation import nlg  # pylint: disable=g-import-not-at-top
  from locvqa_jax.evaluation.scoring import score_predictions  # pylint: disable=g-import-not-at-top
  score_kwargs = dict(score_kwargs or {}, progress=progress)
  records = records or {}
  run = Run(workdir, step, checkpoint)
  with contextlib.suppress(nlg.JavaNotFoundError):  # Scoring says what to install.
    nlg.start_meteor()  # Java loads METEOR's tables while the model decodes.
  out_dir = os.path.join(workdir, "eval", f"{split}_{run.step}")
  kw = dict(batch_size=batch_size, beam_size=beam_size, length_penalty=length_penalty,
            no_repeat_ngram_size=no_repeat_ngram_size, max_batches=max_batches,
            progress=progress)
  preds = predict_split(run, split, records=records.get(split), **kw)
  settings = {"workdir": os.path.abspath(workdir), "split": split, "step": run.step,
              "checkpoint": run.kind, "beam_size": beam_size, "length_penalty": length_penalty,
              "no_repeat_ngram_size": no_repeat_ngram_size}
  if grounding is not None:
    preds, settings["grounding_model"] = _ground(run, split, preds, records.get(split),
                                                 dict(grounding, progress=progress))
  write_jsonl(os.path.join(out_dir, "predictions.jsonl"), preds)
  columns = {"model": score_predictions(preds, **score_kwargs)}
  margins = None  # The model minus the blind run, with bootstrap intervals.
  _write_json(os.path.join(out_dir, "metrics.json"), dict(settings, **columns["model"]))
  if blind_workdir:
    blind = Run(blind_workdir, None, checkpoint)
    if not blind.config.model.blind:
      raise ValueError(f"--blind_workdir {blind_workdir} is not a blind run "
                       "(configs/diff_vqa.py:...,blind)")
    blind_preds = predict_split(blind, split, records=records.get(split), **kw)
    write_jsonl(os.path.join(out_dir, "predictions_blind.jsonl"), blind_preds)
    columns["blind"] = score_predictions(blind_preds, **score_kwargs)
    margins = bootstrap.paired_margins(preds, blind_preds)
    _write_json(os.path.join(out_dir, "margins_blind.json"), margins)
  train_records = records.get("train") or vqa_source.open_records(run.config, "train")
  columns["most frequent"] = score_predictions(most_frequent_baseline(preds, train_records),
                                               **score_kwargs)
  for name, metrics in columns.items():
    if name != "model":
      _write_json(os.path.join(out_dir, f"metrics_{name.replace(' ', '_')}.json"), metrics)
  return {"out_dir": out_dir, "columns": columns, "margins_blind": margins}


def _ground(run: Run, split: str, preds: list[dict[str, Any]], split_records: Optional[Any],
            kwargs: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
  """vqa_grounding.ground_split with the run's defaults: the pretraining workdir its encoder
  came from, its data_dir (for the built chest_imagenome) and resolution."""
  from locvqa_jax import caref  # pylint: disable=g-import-not-at-top
  from locvqa_jax import vqa_grounding  # pylint: disable=g-import-not-at-top
  kwargs = {k: v for k, v in kwargs.items() if v is not None}
  if "pretrain_workdir" not in kwargs:
    kwargs["pretrain_workdir"] = caref.pretrain_workdir_of(run.config)
  kwargs.setdefault("data_dir", run.config.input.data_dir)
  kwargs.setdefault("preferred_config", run.config.input.res)
  if split_records is None:
    split_records = vqa_source.open_records(run.config, split)
  return vqa_grounding.ground_split(preds, split_records, **kwargs)


def _write_json(path: str, obj: dict) -> None:
  with open(path, "w", encoding="utf-8") as f:
    f.write(json.dumps(obj, indent=2) + "\n")
