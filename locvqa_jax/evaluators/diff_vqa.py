"""Validation of difference VQA during training: loss per question type and decoded answers.

Config (`config.evals.<name>`, type 'diff_vqa'): split ('validation'), every_steps, batch_size,
max_batches (teacher-forced loss; 0: the whole split), decode_batches (batches decoded;
0: none), max_decode_len, beam_size (1: greedy), num_samples.

Metrics:
  loss, loss_<type>          teacher-forced token cross-entropy on answer + eos.
  accuracy, closed_accuracy, open_accuracy   exact match on non-difference questions (EKAID).
  diff_finding_f1, diff_false_change_rate   finding-level F1 and false-change rate of difference
                             answers (locvqa_jax/evaluation/findings.py).
  diff_bleu4, diff_cider     pycocoevalcap BLEU-4 / CIDEr on lower-cased, whitespace-split text
                             (no Java; the full protocol is `python -m locvqa_jax.evaluate`).
References here are the tokenizer's decode of the truth tokens; the full evaluation uses the
answers exactly as stored. Samples go to W/samples_<step>.txt.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from locvqa_jax import losses
from locvqa_jax import sharding
from locvqa_jax import vqa_predict
from locvqa_jax.data import vqa_inputs


def text_scores(refs: list[str], hyps: list[str]) -> dict[str, float]:
  """BLEU-4 and CIDEr, one reference each (lower-case, whitespace split; no Java needed)."""
  if not refs:
    return {}
  from pycocoevalcap.bleu.bleu import Bleu  # pylint: disable=g-import-not-at-top
  from pycocoevalcap.cider.cider import Cider  # pylint: disable=g-import-not-at-top
  norm = lambda s: " ".join(s.lower().replace(".", " .").replace(",", " ,").split()) or "<empty>"
  gts = {i: [norm(r)] for i, r in enumerate(refs)}
  res = {i: [norm(h)] for i, h in enumerate(hyps)}
  bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
  cider, _ = Cider().compute_score(gts, res)
  return {"bleu4": float(bleu[3]), "cider": float(cider)}


def answer_scores(questions: list[str], refs: list[str], hyps: list[str]) -> dict[str, float]:
  """Exact match on non-difference questions; finding F1, false-change rate, BLEU-4 and CIDEr on
  difference questions (`what has changed` in the question)."""
  from locvqa_jax.evaluation import accuracy  # pylint: disable=g-import-not-at-top
  from locvqa_jax.evaluation import findings  # pylint: disable=g-import-not-at-top
  out = {}
  em = [i for i, q in enumerate(questions) if accuracy.is_exact_match_question(q)]
  diff = [i for i in range(len(questions)) if i not in set(em)]
  if em:
    acc = accuracy.exact_match_accuracy([refs[i] for i in em], [hyps[i] for i in em])
    out.update({k: acc[k] for k in ("accuracy", "closed_accuracy", "open_accuracy")
                if acc[k] is not None})
  if diff:
    d_refs, d_hyps = [refs[i] for i in diff], [hyps[i] for i in diff]
    f = findings.finding_metrics(d_refs, d_hyps)
    if f["finding_f1"] is not None:
      out["diff_finding_f1"] = f["finding_f1"]
    if f["false_change_rate"] is not None:
      out["diff_false_change_rate"] = f["false_change_rate"]
    out.update({f"diff_{k}": v for k, v in text_scores(d_refs, d_hyps).items()})
  return out


class Evaluator:
  """Runs the difference-VQA validation on `eval_config.split` (see the module docstring)."""

  def __init__(self, *, config: ml_collections.ConfigDict, eval_config: ml_collections.ConfigDict,
               model: Any, module: Any, source: Any, tokenizer: Any, mesh: jax.sharding.Mesh):
    del module
    self.config, self.cfg, self.model, self.source = config, eval_config, model, source
    self.tok, self.mesh = tokenizer, mesh
    self.split, self.every_steps = eval_config.split, eval_config.every_steps
    self._forward = jax.jit(self._forward_fn)
    self._decode = vqa_predict.make_decoder(model, max_decode_len=eval_config.max_decode_len,
                                            beam_size=eval_config.beam_size)

  def _forward_fn(self, params, batch):
    inputs = batch["text"][:, :-1]
    logits, _ = self.model.apply({"params": params}, batch["image"], inputs,
                                 batch["mask_ar"][:, :-1],
                                 mask_tokens=(inputs != losses.PAD_ID).astype(jnp.int32))
    return losses.weighted_token_xent(logits, batch["text"][:, 1:], batch["mask_loss"][:, 1:])

  def _batches(self, limit: int):
    batches = self.source.eval_batches(self.config, self.tok, split=self.split,
                                       global_batch_size=self.cfg.batch_size)
    return itertools.islice(batches, limit) if limit else batches

  def run(self, params: Any, step: int, workdir: str) -> dict[str, float]:
    types = vqa_inputs.QUESTION_TYPES
    loss_sum, loss_n = np.zeros(len(types)), np.zeros(len(types))
    questions, refs, hyps, samples = [], [], [], []
    for i, batch in enumerate(self._batches(max(self.cfg.max_batches, self.cfg.decode_batches)
                                            if self.cfg.max_batches else 0)):
      host = {k: vqa_predict.gather(v) for k, v in batch.items() if k != "image"}
      valid = host.get("valid", np.ones_like(host["question_type"])) > 0
      if not self.cfg.max_batches or i < self.cfg.max_batches:
        loss = self._forward(params, sharding.make_global_batch(batch, self.mesh))
        loss = np.asarray(jax.device_get(loss))
        np.add.at(loss_sum, host["question_type"][valid], loss[valid])
        np.add.at(loss_n, host["question_type"][valid], 1)
      if i >= self.cfg.decode_batches:
        continue
      for p in vqa_predict.predict(self._decode, params, [batch], self.tok, mesh=self.mesh):
        r = p["position"]
        prefix_len = int(np.argmax(host["mask_ar"][r] > 0))
        truth = host["text"][r, prefix_len:][host["mask_ar"][r, prefix_len:] > 0]
        questions.append(self.tok.decode([int(t) for t in host["text"][r, 1:prefix_len]]))
        refs.append(vqa_predict.answer_text(self.tok, truth))
        hyps.append(p["prediction"])
        if len(samples) < self.cfg.num_samples:
          samples.append((types[p["question_type_id"]], questions[-1], refs[-1], hyps[-1]))
    metrics = {f"loss_{t}": loss_sum[i] / loss_n[i] for i, t in enumerate(types) if loss_n[i]}
    if loss_n.sum():
      metrics["loss"] = loss_sum.sum() / loss_n.sum()
    if questions:
      metrics.update(answer_scores(questions, refs, hyps))
    if samples and jax.process_index() == 0:
      with open(os.path.join(workdir, f"samples_{step}.txt"), "w") as f:
        f.write(f"# answers at step {step}: type | question | truth | prediction\n")
        for s in samples:
          f.write(" | ".join(s) + "\n")
    return {k: float(v) for k, v in metrics.items()}
