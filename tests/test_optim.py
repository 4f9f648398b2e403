"""Optimizer: schedule, freezing by regex, learning-rate multipliers, decay mask, accumulation."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from locvqa_jax import optim


def _config(**kw):
  c = ml_collections.ConfigDict(dict(
      lr=0.1, wd=0.0, wd_mask=(".*/kernel",), optax=dict(b1=0.9, b2=0.95, eps=1e-8),
      schedule=dict(warmup_steps=2, decay_type="cosine", end_lr_ratio=0.0),
      grad_clip_norm=0.0, frozen=(), lr_mults=()))
  c.update(kw)
  return c


def _params():
  return {"encoder": {"Dense_0": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones((2,))}},
          "decoder": {"head": {"kernel": jnp.ones((2, 4))}}}


def _one_update(config, params, grads, steps=1):
  tx, _ = optim.make_optimizer(config, params, total_steps=10)
  state = tx.init(params)
  for _ in range(steps):
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  return params


def test_warmup_then_cosine():
  sched = optim.make_schedule(_config(), total_steps=10)
  np.testing.assert_allclose([sched(0), sched(1), sched(2), sched(10)], [0.0, 0.05, 0.1, 0.0],
                             atol=1e-7)
  assert 0.0 < sched(6) < 0.1


def test_frozen_params_do_not_change_and_carry_no_moments():
  params = _params()
  grads = jax.tree.map(jnp.ones_like, params)
  config = _config(frozen=("encoder/.*",), wd=0.1)
  new = _one_update(config, params, grads, steps=3)
  np.testing.assert_array_equal(new["encoder"]["Dense_0"]["kernel"], 1.0)
  np.testing.assert_array_equal(new["encoder"]["Dense_0"]["bias"], 1.0)
  assert not np.allclose(new["decoder"]["head"]["kernel"], 1.0)
  tx, _ = optim.make_optimizer(config, params, 10)
  n_state = sum(x.size for x in jax.tree.leaves(tx.init(params)) if x.ndim)
  assert n_state == 2 * 8  # Adam mu and nu for the decoder kernel only.


def test_frozen_grads_do_not_count_in_clipping():
  params = _params()
  grads = jax.tree.map(jnp.ones_like, params)
  grads["encoder"]["Dense_0"]["kernel"] = 1e6 * grads["encoder"]["Dense_0"]["kernel"]
  clipped = _one_update(_config(frozen=("encoder/.*",), grad_clip_norm=1.0), params, grads)
  free = _one_update(_config(frozen=("encoder/.*",)), params, grads)
  np.testing.assert_allclose(clipped["decoder"]["head"]["kernel"],
                             free["decoder"]["head"]["kernel"], rtol=1e-6)


def test_lr_multipliers_scale_the_step():
  params = _params()
  grads = jax.tree.map(jnp.ones_like, params)
  config = _config(lr_mults=(("encoder/.*", 0.1),), schedule=dict(
      warmup_steps=0, decay_type="constant", end_lr_ratio=1.0))
  new = _one_update(config, params, grads)
  enc_step = 1.0 - np.asarray(new["encoder"]["Dense_0"]["kernel"])
  dec_step = 1.0 - np.asarray(new["decoder"]["head"]["kernel"])
  # Adam's first step is lr * sign(g) (up to eps): 0.1 * 0.1 for the encoder, 0.1 for the rest.
  np.testing.assert_allclose(enc_step, 0.01, rtol=1e-4)
  np.testing.assert_allclose(dec_step, 0.1, rtol=1e-4)


def test_weight_decay_only_on_masked_paths():
  params = _params()
  zero = jax.tree.map(jnp.zeros_like, params)
  config = _config(wd=0.5, schedule=dict(warmup_steps=0, decay_type="constant",
                                         end_lr_ratio=1.0))
  new = _one_update(config, params, zero)
  np.testing.assert_allclose(new["encoder"]["Dense_0"]["kernel"], 1.0 - 0.1 * 0.5, rtol=1e-6)
  np.testing.assert_array_equal(new["encoder"]["Dense_0"]["bias"], 1.0)


def test_freezing_everything_is_an_error():
  with pytest.raises(ValueError, match="freezes every parameter"):
    optim.make_optimizer(_config(frozen=(".*",)), _params(), 10)


def test_gradient_accumulation_matches_the_full_batch():
  w = jnp.arange(3.0)
  batch = {"x": jnp.arange(24.0).reshape(8, 3)}

  def grad_fn(params, b, rng):
    del rng
    loss_fn = lambda p: jnp.mean((b["x"] @ p) ** 2)
    return jax.grad(loss_fn)(params), {"n": jnp.float32(b["x"].shape[0])}

  full, _ = optim.accumulate_gradients(grad_fn, w, batch, jax.random.PRNGKey(0), 1)
  acc, aux = optim.accumulate_gradients(grad_fn, w, batch, jax.random.PRNGKey(0), 4)
  np.testing.assert_allclose(acc, full, rtol=1e-6)
  assert float(aux["n"]) == 8.0
