"""Validation of location-aware pretraining: loss per task, box quality, text scores, samples.

Config (`config.evals.<name>`, type 'pretrain'): split ('validation'), every_steps, batch_size,
max_batches (0: the whole split), decode (greedy decoding on/off), max_decode_len,
baseline_batches (train batches read for the mean boxes; 0: all), num_samples,
constrain_boxes (default False).

constrain_boxes: where the task template puts a box (the 4 tokens after the CAREF prefix; the
4 loc-target positions of AREF) the prediction is the argmax over the 1024 location tokens only.
The template fixes the format, so this removes unparseable outputs without looking at the
truth; it is still greedy decoding of the same model.

Metrics (DESIGN.md):
  loss_<task>            teacher-forced token cross-entropy of each task.
  aref_iou, aref_acc50   AREF with the phrase teacher-forced: the 4 loc tokens are the argmax at
                         their positions; IoU with the truth box and accuracy at IoU >= 0.5.
  caref_iou, caref_acc50 CAREF by greedy decoding after the given phrase (first 4 tokens).
  <task>_baseline_iou/_acc50   the mean training box of the example's region name.
  gcap_bleu4, gcap_cider GCAP phrase generated greedily after the teacher-forced box.
  cap_bleu4, cap_cider   CAP report generated greedily (up to max_decode_len tokens).
  aref_parsed, caref_parsed  share of rows whose 4 box tokens are location tokens without
                         the constraint (AREF: the free argmax; CAREF: the decode, so 1.0 when
                         constrain_boxes is on).
  aref_tracking, caref_tracking   whether the boxes follow the image rather than the region's
                         prior (`tracking`): the correlation between how far each predicted
                         coordinate lies from the region's mean box and how far the truth does.
                         About 0 for a model that recites a box per region, 1 for a perfect one.
  <task>_named_iou, <task>_named_baseline_iou, <task>_named_share   the same on the rows whose
                         phrase is the region name itself. On the other rows (finding
                         sentences such as "No pneumothorax.", often linked to several regions)
                         the baseline knows the region and the model does not, so this subset is
                         where the two see the same information.
  <task>_phrase_iou, <task>_phrase_acc50, <task>_phrase_baseline_iou, <task>_phrase_baseline_acc50
                         the same scores against the nearest box the row's phrase has in its
                         image (`phrase_boxes` of the evaluation batches): a finding sentence
                         linked to several regions ("No pneumothorax." to both lungs) is found
                         when any of them is. The baseline (its region's mean box) is scored
                         the same way. Rows that name their region have one box, so on them the
                         two scores are equal.
A box whose tokens are not 4 location tokens scores IoU 0. Text is lower-cased and split on
whitespace, then scored with pycocoevalcap's Bleu(4) and Cider. Sample decodes go to
W/samples_<step>.txt.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from locvqa_jax import losses
from locvqa_jax import sharding
from locvqa_jax.data import tasks as tasks_lib
from locvqa_jax.evaluation.grounding import box_iou
from locvqa_jax.evaluation.grounding import nearest_box_iou
from locvqa_jax.models import cappa

NUM_REGIONS = 36  # Chest ImaGenome object names (CONTRACTS D region_id).


def text_scores(refs: list[str], hyps: list[str]) -> dict[str, float]:
  """BLEU-4 and CIDEr of hypotheses against one reference each (lower-case, whitespace split)."""
  if not refs:
    return {}
  from pycocoevalcap.bleu.bleu import Bleu
  from pycocoevalcap.cider.cider import Cider
  norm = lambda s: " ".join(s.lower().split()) or "<empty>"
  gts = {i: [norm(r)] for i, r in enumerate(refs)}
  res = {i: [norm(h)] for i, h in enumerate(hyps)}
  bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
  cider, _ = Cider().compute_score(gts, res)
  return {"bleu4": float(bleu[3]), "cider": float(cider)}


def tracking(pred: np.ndarray, truth: np.ndarray, base: np.ndarray) -> float:
  """Pearson correlation of (pred - base) with (truth - base), pooled over the 4 coordinates.

  Args:
    pred, truth, base: [N, 4] boxes; base is each row's region mean box.

  Returns:
    The correlation, or NaN with fewer than 2 rows or a constant deviation (e.g. a model that
    returns exactly the mean box).
  """
  a, b = (np.asarray(pred) - base).ravel(), (np.asarray(truth) - base).ravel()
  if a.size < 2 or a.std() == 0 or b.std() == 0:
    return float("nan")
  return float(np.corrcoef(a, b)[0, 1])


class Evaluator:
  """Runs the pretraining validation on `eval_config.split` (see the module docstring)."""

  def __init__(self, *, config: ml_collections.ConfigDict, eval_config: ml_collections.ConfigDict,
               model: Any, module: Any, source: Any, tokenizer: Any, mesh: jax.sharding.Mesh):
    del module
    self.config, self.cfg, self.model, self.source = config, eval_config, model, source
    self.tok, self.mesh = tokenizer, mesh
    self.split, self.every_steps = eval_config.split, eval_config.every_steps
    self.tasks = tuple(config.loss.task_names)
    # id -> location bin (or -1) over the whole embedding table, [MASK] included.
    self.num_bins = len(tokenizer.loc_ids)
    self.bin_of = np.full(config.vocab_size + 1, -1, np.int32)
    self.bin_of[np.asarray(tokenizer.loc_ids)] = np.arange(self.num_bins)
    self.constrain = bool(eval_config.get("constrain_boxes", False))
    # Config values that place the location tokens in the vocabulary must match the tokenizer.
    first = config.loss.get("loc_first_id", None)
    if first is not None:
      _check_loc_ids("config.loss.loc_first_id", first, (first, self.num_bins), tokenizer)
    decoder = config.model.get("decoder", {})
    if decoder.get("loc_embed_init", "normal") != "normal":
      loc_ids = tuple(decoder.get("loc_ids", cappa.Decoder.loc_ids))
      _check_loc_ids("config.model.decoder.loc_ids", loc_ids, loc_ids, tokenizer)
    # Replicated outputs: every host reads whole results, also on multi-host meshes.
    repl = sharding.replicated(mesh)
    self._forward = jax.jit(self._forward_fn, out_shardings=repl)
    self._greedy = jax.jit(self._greedy_fn, out_shardings=repl)
    self.mean_boxes = self._region_mean_boxes()

  # -- device functions -------------------------------------------------------------------------

  def _forward_fn(self, params, batch):
    """Teacher-forced: per-example loss [B], argmax [B, L-1] and loc-only argmax [B, L-1]."""
    inputs = batch["text"][:, :-1]
    logits, _ = self.model.apply({"params": params}, batch["image"], inputs,
                                 batch["mask_ar"][:, :-1],
                                 mask_tokens=(inputs != losses.PAD_ID).astype(jnp.int32))
    loss = losses.weighted_token_xent(logits, batch["text"][:, 1:], batch["mask_loss"][:, 1:])
    loc_only = jnp.where(jnp.asarray(self.bin_of >= 0)[:logits.shape[-1]], logits, -jnp.inf)
    return (loss, jnp.argmax(logits, -1).astype(jnp.int32),
            jnp.argmax(loc_only, -1).astype(jnp.int32))

  def _greedy_fn(self, params, image, prefix, prefix_len, allowed):
    from locvqa_jax import decoding
    encoded = self.model.apply({"params": params}, image, method="encode")
    return decoding.greedy_decode(self.model, params, encoded, prefix, prefix_len,
                                  max_decode_len=self.cfg.max_decode_len, allowed=allowed)

  # -- host helpers -----------------------------------------------------------------------------

  def _batches(self, split: str, limit: int):
    batches = self.source.eval_batches(self.config, self.tok, split=split,
                                       global_batch_size=self.cfg.batch_size)
    return itertools.islice(batches, limit) if limit else batches

  def _region_mean_boxes(self) -> np.ndarray:
    """[36, 4] mean truth box of each region over the train split's region examples."""
    sums, counts = np.zeros((NUM_REGIONS, 4)), np.zeros(NUM_REGIONS)
    for b in self._batches("train", self.cfg.baseline_batches):
      b = _gather(b)
      keep = (b["region_id"] >= 0) & (b.get("valid", np.ones_like(b["region_id"])) > 0)
      np.add.at(sums, b["region_id"][keep], b["box"][keep])
      np.add.at(counts, b["region_id"][keep], 1)
    return np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], 0.0)

  def _boxes_from_ids(self, ids: np.ndarray) -> np.ndarray:
    """[N, 4] token ids -> [N, 4] boxes; rows with a non-location token become [0, 0, 0, 0]."""
    bins = self.bin_of[np.clip(ids, 0, len(self.bin_of) - 1)]
    boxes = bins.astype(np.float32) / (self.num_bins - 1)
    return np.where((bins >= 0).all(-1, keepdims=True), boxes, 0.0)

  def _is_named(self, task: str, text: np.ndarray, region_id: int, box: np.ndarray) -> bool:
    """Whether a row's sequence is its template rendered with phrase = the region name."""
    templates = self.config.input.get("templates", None)
    if region_id < 0 or templates is None:
      return False
    kw = dict(phrase=tasks_lib.REGION_NAMES[region_id], box=box)
    ids = (tasks_lib.render(templates[f"{task}_prefix"], self.tok, **kw)
           + tasks_lib.render(templates[f"{task}_suffix"], self.tok, **kw) + [1])
    return len(ids) < len(text) and [int(i) for i in text[1:1 + len(ids)]] == ids

  def _decode_text(self, ids) -> str:
    ids = [int(i) for i in ids]
    if 1 in ids:  # eos
      ids = ids[:ids.index(1)]
    return self.tok.decode([i for i in ids if i > 3 and i < self.config.vocab_size])

  # -- the evaluation ---------------------------------------------------------------------------

  def run(self, params: Any, step: int, workdir: str) -> dict[str, float]:
    t_ids = {t: i for i, t in enumerate(self.tasks)}
    loss_sum, loss_n = np.zeros(len(self.tasks)), np.zeros(len(self.tasks))
    # predicted, truth, baseline, the image's boxes of the row's phrase
    box_rows = {t: ([], [], [], []) for t in ("aref", "caref")}
    parsed = {t: [] for t in ("aref", "caref")}
    named = {t: [] for t in ("aref", "caref")}
    texts = {t: ([], []) for t in ("gcap", "cap")}
    samples = []
    for batch in self._batches(self.split, self.cfg.max_batches):
      gb = sharding.make_global_batch({k: v for k, v in batch.items() if k != "phrase_boxes"},
                                      self.mesh)
      loss, free, loc_only = (np.asarray(a) for a in jax.device_get(self._forward(params, gb)))
      host = _gather(batch)
      preds = loc_only if self.constrain else free
      valid = host.get("valid", np.ones_like(host["task_id"])) > 0
      task, text, mask_ar = host["task_id"], host["text"], host["mask_ar"]
      np.add.at(loss_sum, task[valid], loss[valid])
      np.add.at(loss_n, task[valid], 1)
      first_suffix = np.argmax(mask_ar > 0, axis=1)
      if "aref" in t_ids:  # The loc targets: the 4 positions whose target is a location token.
        rows = np.nonzero(valid & (task == t_ids["aref"]))[0]
        for r in rows:
          pos = np.nonzero(self.bin_of[text[r, 1:]] >= 0)[0][:4]
          parsed["aref"].append(len(pos) == 4 and bool((self.bin_of[free[r, pos]] >= 0).all()))
          named["aref"].append(self._is_named("aref", text[r], host["region_id"][r],
                                              host["box"][r]))
          box_rows["aref"][0].append(self._boxes_from_ids(preds[r, pos][None])[0]
                                     if len(pos) == 4 else np.zeros(4))
          box_rows["aref"][1].append(host["box"][r])
          box_rows["aref"][2].append(self.mean_boxes[max(host["region_id"][r], 0)])
          box_rows["aref"][3].append(_phrase_boxes(host, r))
      if not self.cfg.decode:
        continue
      # One greedy pass: CAREF/CAP after their prefix, GCAP after the prefix + truth box.
      prefix_len = first_suffix.copy()
      if "gcap" in t_ids:
        prefix_len = np.where(task == t_ids["gcap"], first_suffix + 4, prefix_len)
      prefix_len = np.maximum(prefix_len, 1).astype(np.int32)
      # Prefix width bucketed to 16 so the jitted decode compiles for few shapes.
      width = min(text.shape[1], -(-int(prefix_len.max()) // 16) * 16)
      prefix = np.where(np.arange(width)[None] < prefix_len[:, None], text[:, :width], 0)
      local = slice(jax.process_index() * len(batch["task_id"]),
                    (jax.process_index() + 1) * len(batch["task_id"]))
      # Constrained rows: CAREF's first 4 generated tokens may only be location tokens.
      allowed = np.ones((len(task), 4, len(self.bin_of)), bool)
      if self.constrain and "caref" in t_ids:
        allowed[task == t_ids["caref"]] = self.bin_of[None] >= 0
      g = sharding.make_global_batch(
          {"image": batch["image"], "prefix": prefix[local].astype(np.int32),
           "prefix_len": prefix_len[local], "allowed": allowed[local]}, self.mesh)
      out = np.asarray(jax.device_get(self._greedy(params, g["image"], g["prefix"],
                                                   g["prefix_len"], g["allowed"])))
      for r in np.nonzero(valid)[0]:
        name = self.tasks[task[r]]
        truth_ids = text[r, prefix_len[r]:][mask_ar[r, prefix_len[r]:] > 0]
        if name == "caref":
          box_rows["caref"][0].append(self._boxes_from_ids(out[r, :4][None])[0])
          parsed["caref"].append(bool((self.bin_of[out[r, :4]] >= 0).all()))
          named["caref"].append(self._is_named("caref", text[r], host["region_id"][r],
                                               host["box"][r]))
          box_rows["caref"][1].append(host["box"][r])
          box_rows["caref"][2].append(self.mean_boxes[max(host["region_id"][r], 0)])
          box_rows["caref"][3].append(_phrase_boxes(host, r))
        elif name in texts:
          texts[name][0].append(self._decode_text(truth_ids))
          texts[name][1].append(self._decode_text(out[r]))
        if len(samples) < self.cfg.num_samples:
          samples.append((name, self.tok.decode([int(i) for i in text[r, :prefix_len[r]]]),
                          self.tok.decode([int(i) for i in truth_ids]),
                          self.tok.decode([int(i) for i in out[r] if i > 0])))
    metrics = {f"loss_{t}": loss_sum[i] / loss_n[i] for i, t in enumerate(self.tasks)
               if loss_n[i]}
    if loss_n.sum():
      metrics["loss"] = float(loss_sum.sum() / loss_n.sum())
    for name, rows in box_rows.items():
      if not rows[1]:
        continue
      pred, truth, base, phrase_boxes = (np.stack(r) for r in rows)
      iou, base_iou = box_iou(pred, truth), box_iou(base, truth)
      phrase_iou = nearest_box_iou(pred, phrase_boxes)
      phrase_base_iou = nearest_box_iou(base, phrase_boxes)
      metrics.update({f"{name}_iou": iou.mean(), f"{name}_acc50": (iou >= 0.5).mean(),
                      f"{name}_baseline_iou": base_iou.mean(),
                      f"{name}_baseline_acc50": (base_iou >= 0.5).mean(),
                      f"{name}_phrase_iou": phrase_iou.mean(),
                      f"{name}_phrase_acc50": (phrase_iou >= 0.5).mean(),
                      f"{name}_phrase_baseline_iou": phrase_base_iou.mean(),
                      f"{name}_phrase_baseline_acc50": (phrase_base_iou >= 0.5).mean(),
                      f"{name}_parsed": np.mean(parsed[name]),
                      f"{name}_named_share": np.mean(named[name])})
      track = tracking(pred, truth, base)
      if not np.isnan(track):
        metrics[f"{name}_tracking"] = track
      if any(named[name]):
        m = np.asarray(named[name])
        metrics.update({f"{name}_named_iou": iou[m].mean(),
                        f"{name}_named_baseline_iou": base_iou[m].mean()})
    for name, (refs, hyps) in texts.items():
      metrics.update({f"{name}_{k}": v for k, v in text_scores(refs, hyps).items()})
    if samples and jax.process_index() == 0:
      _write_samples(os.path.join(workdir, f"samples_{step}.txt"), step, samples)
    return {k: float(v) for k, v in metrics.items()}


def _check_loc_ids(key: str, value: Any, first_count: tuple[int, int], tokenizer: Any) -> None:
  """Raises unless the tokenizer's location tokens are ids first .. first + count - 1."""
  first, count = first_count
  if tuple(tokenizer.loc_ids) != tuple(range(first, first + count)):
    raise ValueError(f"{key}={value} but the tokenizer's {len(tokenizer.loc_ids)} location "
                     f"tokens are ids {tokenizer.loc_ids[0]}..{tokenizer.loc_ids[-1]}")


def _phrase_boxes(host: dict[str, np.ndarray], r: int) -> np.ndarray:
  """[K, 4] the row's phrase boxes (batches without them: its truth box alone)."""
  return host["phrase_boxes"][r] if "phrase_boxes" in host else host["box"][r][None]


def _gather(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """All processes' rows of a per-process batch, in process order (numpy on every host)."""
  if jax.process_count() == 1:
    return {k: np.asarray(v) for k, v in batch.items()}
  return {k: np.asarray(multihost_utils.process_allgather(np.asarray(v), tiled=True))
          for k, v in batch.items()}


def _write_samples(path: str, step: int, samples: list[tuple[str, str, str, str]]) -> None:
  with open(path, "w") as f:
    f.write(f"# greedy decodes at step {step}: task | prefix | truth | prediction\n")
    for task, prefix, truth, pred in samples:
      f.write(f"[{task}]\n  prefix: {prefix}\n  truth:  {truth}\n  pred:   {pred}\n\n")
