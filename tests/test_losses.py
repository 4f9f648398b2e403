"""Location-token soft targets of the captioning loss."""

import jax
import jax.numpy as jnp
import numpy as np

from locvqa_jax import losses

FIRST, BINS, VOCAB = 4, 1024, 1100


def _peaked(targets_at: list[int], length: int = 1) -> jax.Array:
  """[len(targets_at), length, VOCAB] logits with a sharp peak at the given ids."""
  logits = np.zeros((len(targets_at), length, VOCAB), np.float32)
  for b, t in enumerate(targets_at):
    logits[b, :, t] = 8.0
  return jnp.asarray(logits)


def test_tiny_sigma_is_the_hard_cross_entropy():
  logits = jax.random.normal(jax.random.PRNGKey(0), (2, 3, VOCAB))
  targets = jnp.array([[FIRST + 10, 1050, 5], [FIRST + 1023, FIRST, 0]])
  weights = jnp.array([[1, 1, 1], [1, 1, 0]])
  soft = losses.loc_soft_targets_xent(logits, targets, weights, loc_first_id=FIRST,
                                      num_bins=BINS, sigma=1e-3)
  hard = losses.weighted_token_xent(logits, targets, weights)
  np.testing.assert_allclose(soft, hard, rtol=1e-5)


def test_near_miss_costs_less_than_a_wild_one():
  target = jnp.full((3, 1), FIRST + 500)
  logits = _peaked([FIRST + 500, FIRST + 503, FIRST + 900])
  loss = losses.loc_soft_targets_xent(logits, target, jnp.ones((3, 1)), loc_first_id=FIRST,
                                      num_bins=BINS, sigma=5.0)
  assert loss[0] < loss[1] < loss[2]
  hard = losses.weighted_token_xent(logits, target, jnp.ones((3, 1)))
  np.testing.assert_allclose(hard[1], hard[2], rtol=1e-6)  # hard targets cannot tell them apart


def test_other_targets_keep_one_hot_and_finite_gradients():
  targets = jnp.array([[1, 1050, FIRST + 3]])  # eos, a word piece beyond the loc ids, a box bin
  logits = jax.random.normal(jax.random.PRNGKey(1), (1, 3, VOCAB))
  fn = lambda lg: losses.loc_soft_targets_xent(lg, targets, jnp.ones((1, 3)),
                                               loc_first_id=FIRST, num_bins=BINS,
                                               sigma=10.0).sum()
  grad = jax.grad(fn)(logits)
  assert np.isfinite(np.asarray(grad)).all()
  per_token = jax.grad(lambda lg: losses.weighted_token_xent(lg, targets, jnp.ones((1, 3))).sum())
  np.testing.assert_allclose(grad[0, :2], per_token(logits)[0, :2], rtol=1e-5, atol=1e-7)
  # The box bin's gradient is spread over its neighbours, not only on its own id.
  assert (np.asarray(grad[0, 2, FIRST + 4:FIRST + 10]) < 0).all()
