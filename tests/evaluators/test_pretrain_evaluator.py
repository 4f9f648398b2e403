"""Pretraining evaluator: box IoU, text scores and a run on the tiny fixture."""

import os

import jax
import numpy as np
import pytest

import trainer_fixture as fx
from locvqa_jax import sharding
from locvqa_jax import train
from locvqa_jax.evaluators import pretrain


def test_box_iou():
  a = np.array([[0, 0, 1, 1], [0, 0, 0.5, 0.5], [0, 0, 1, 1], [0.2, 0.2, 0.2, 0.6]], np.float32)
  b = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0.5, 0.5, 1.5, 1.5], [0.2, 0.2, 0.4, 0.6]],
               np.float32)
  np.testing.assert_allclose(pretrain.box_iou(a, b), [1.0, 0.25, 0.25 / 1.75, 0.0], rtol=1e-6)


def test_nearest_box_iou():
  pred = np.array([[0, 0, 1, 1], [0, 0.5, 1, 1]], np.float32)
  left, right, none = [0, 0.5, 1, 1], [0, 0, 1, 0.5], [0, 0, 0, 0]
  boxes = np.array([[right, left, none], [right, none, none]], np.float32)
  np.testing.assert_allclose(pretrain.nearest_box_iou(pred, boxes), [0.5, 0.0])
  np.testing.assert_allclose(pretrain.nearest_box_iou(pred[1:], boxes[:1]), [1.0])


def test_tracking_separates_image_from_region_prior():
  rng = np.random.default_rng(0)
  base = rng.uniform(0.2, 0.4, (50, 4))
  truth = base + rng.normal(0, 0.05, (50, 4))
  assert pretrain.tracking(truth, truth, base) == pytest.approx(1.0)
  # Reciting a box per region (the mean itself, or a fixed offset of it) does not track.
  assert np.isnan(pretrain.tracking(base, truth, base))
  shifted = base + 0.01 * np.arange(4)
  assert abs(pretrain.tracking(shifted + rng.normal(0, 1e-3, (50, 4)), truth, base)) < 0.3
  half = base + 0.5 * (truth - base) + rng.normal(0, 0.01, (50, 4))
  assert 0.8 < pretrain.tracking(half, truth, base) < 1.0
  assert np.isnan(pretrain.tracking(truth[:0], truth[:0], base[:0]))


def test_text_scores_perfect_and_case_insensitive():
  refs = ["Small left effusion", "no pneumothorax is seen", "heart size normal"]
  out = pretrain.text_scores(refs, [r.upper() for r in refs])
  assert out["bleu4"] == pytest.approx(1.0, abs=1e-6)
  assert out["cider"] > 1.0
  worse = pretrain.text_scores(refs, ["small right effusion", "pneumothorax", "heart"])
  assert worse["bleu4"] < out["bleu4"] and worse["cider"] < out["cider"]


def test_evaluator_on_fixture(tmp_path):
  config = fx.make_config(**{"evals": {"val": dict(
      type="pretrain", split="validation", every_steps=0, batch_size=8, max_batches=0,
      decode=False, max_decode_len=5, baseline_batches=2, num_samples=2)}})
  mesh = sharding.make_mesh(config.mesh)
  batch = fx._batch(np.random.default_rng(0), 8)
  trainer = train.build_trainer(config, mesh, batch)
  state = trainer.init_state(jax.random.PRNGKey(0))
  ev = pretrain.Evaluator(config=config, eval_config=config.evals.val, model=trainer.model,
                          module=trainer.module, source=fx, tokenizer=fx._Tokenizer(), mesh=mesh)
  assert ev.mean_boxes.shape == (36, 4)
  out = ev.run(state["params"], 0, str(tmp_path))
  # Zero-init-free tiny model: every token is roughly uniform over VOCAB + 1 outputs.
  assert {f"loss_{t}" for t in fx.TASKS} <= set(out)
  assert out["loss"] == pytest.approx(np.log(fx.VOCAB + 1), rel=0.2)
  assert {"aref_iou", "aref_acc50", "aref_baseline_iou"} <= set(out)
  assert 0.0 <= out["aref_baseline_iou"] <= 1.0
  # Batches without phrase_boxes: a row's only box of its phrase is its truth box.
  assert out["aref_phrase_iou"] == pytest.approx(out["aref_iou"])
  assert out["aref_phrase_baseline_iou"] == pytest.approx(out["aref_baseline_iou"])


class _WithPhraseBoxes:
  """The fixture's source; evaluation rows also have a second phrase box, BOX."""
  BOX = [0.1, 0.2, 0.6, 0.7]

  def __getattr__(self, name):
    return getattr(fx, name)

  def eval_batches(self, *args, **kwargs):
    for b in fx.eval_batches(*args, **kwargs):
      boxes = np.zeros((len(b["box"]), 8, 4), np.float32)
      boxes[:, 0], boxes[:, 1] = b["box"], self.BOX
      yield {**b, "phrase_boxes": boxes}


def test_phrase_scores_take_the_nearest_phrase_box(tmp_path):
  config = fx.make_config(**{"evals": {"val": dict(
      type="pretrain", split="validation", every_steps=0, batch_size=8, max_batches=2,
      decode=False, max_decode_len=5, baseline_batches=1, num_samples=0)}})
  mesh = sharding.make_mesh(config.mesh)
  trainer = train.build_trainer(config, mesh, fx._batch(np.random.default_rng(0), 8))
  ev = pretrain.Evaluator(config=config, eval_config=config.evals.val, model=trainer.model,
                          module=trainer.module, source=_WithPhraseBoxes(),
                          tokenizer=fx._Tokenizer(), mesh=mesh)
  ev.mean_boxes[:] = _WithPhraseBoxes.BOX  # Every region's mean box is the second phrase box.
  out = ev.run(trainer.init_state(jax.random.PRNGKey(0))["params"], 0, str(tmp_path))
  assert out["aref_phrase_baseline_iou"] == pytest.approx(1.0)
  assert out["aref_phrase_baseline_acc50"] == 1.0
  assert out["aref_baseline_iou"] < 0.5
  assert out["aref_phrase_iou"] >= out["aref_iou"]


def test_sincos_location_rows_must_match_the_tokenizer():
  config = fx.make_config(**{"evals": {"val": dict(
      type="pretrain", split="validation", every_steps=0, batch_size=8, max_batches=1,
      decode=False, max_decode_len=5, baseline_batches=1, num_samples=0)}})
  mesh = sharding.make_mesh(config.mesh)
  trainer = train.build_trainer(config, mesh, fx._batch(np.random.default_rng(0), 8))
  make = lambda: pretrain.Evaluator(config=config, eval_config=config.evals.val,
                                    model=trainer.model, module=trainer.module, source=fx,
                                    tokenizer=fx._Tokenizer(), mesh=mesh)
  with config.unlocked():
    config.model.decoder = dict(loc_embed_init="sincos", loc_ids=(4, 1024))
  with pytest.raises(ValueError, match=r"loc_ids=\(4, 1024\) but the tokenizer's 16 location "
                                       r"tokens are ids 16\.\.31"):
    make()
  config.model.decoder.loc_ids = (16, 16)
  make()
  with config.unlocked():
    config.loss.loc_first_id = 4
  with pytest.raises(ValueError, match=r"loss.loc_first_id=4 but the tokenizer's 16 location"):
    make()
  with config.unlocked():
    config.loss.loc_first_id = 16
    del config.model.decoder["loc_ids"]  # The decoder's default, ids 4 .. 1027.
  with pytest.raises(ValueError, match=r"loc_ids=\(4, 1024\)"):
    make()


def test_constrained_aref_boxes(tmp_path):
  """AREF with constrain_boxes (CAREF's constrained decode is tested in tests/test_decoding.py;
  the fixture model cannot decode)."""
  outs = {}
  for constrain in (False, True):
    config = fx.make_config(**{"evals": {"val": dict(
        type="pretrain", split="validation", every_steps=0, batch_size=8, max_batches=0,
        decode=False, max_decode_len=5, baseline_batches=2, num_samples=2,
        constrain_boxes=constrain)}})
    mesh = sharding.make_mesh(config.mesh)
    trainer = train.build_trainer(config, mesh, fx._batch(np.random.default_rng(0), 8))
    state = trainer.init_state(jax.random.PRNGKey(0))
    ev = pretrain.Evaluator(config=config, eval_config=config.evals.val, model=trainer.model,
                            module=trainer.module, source=fx, tokenizer=fx._Tokenizer(),
                            mesh=mesh)
    outs[constrain] = ev.run(state["params"], 0, str(tmp_path))
  # aref_parsed always measures the free argmax, so the constraint does not change it.
  assert outs[True]["aref_parsed"] == outs[False]["aref_parsed"]
  assert outs[False]["aref_parsed"] < 1.0
  assert 0.0 <= outs[True]["aref_named_share"] <= 1.0
