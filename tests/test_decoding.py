"""Greedy decoding with the KV cache against the uncached teacher-forced decoder."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from locvqa_jax import decoding
from locvqa_jax.models import cappa

VOCAB, EOS, PAD = 30, 1, 0


def _setup(**decoder):
  model = cappa.Model(preset="micro", decoder=dict(vocab_size=VOCAB, max_len=32, **decoder))
  image = jax.random.uniform(jax.random.PRNGKey(0), (3, 32, 32, 1), minval=-1, maxval=1)
  text = jnp.zeros((3, 8), jnp.int32)
  params = jax.jit(model.init)(jax.random.PRNGKey(1), image, text, text)["params"]
  # Random weights everywhere (the logits layer starts at zero) so argmax varies.
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
  params = jax.tree.unflatten(tree, [x + 0.5 * jax.random.normal(k, x.shape)
                                     for x, k in zip(leaves, keys)])
  encoded = jax.jit(functools.partial(model.apply, method="encode"))({"params": params}, image)
  return model, params, encoded


@pytest.fixture(scope="module")
def setup():
  return _setup()


_greedy = jax.jit(decoding.greedy_decode, static_argnums=0,
                  static_argnames=("max_decode_len", "eos_id", "pad_id"))

_teacher_forced = jax.jit(decoding.teacher_forced_argmax, static_argnums=0)


@pytest.mark.parametrize("memory_posemb", ["none", "sincos2d"])
def test_cached_greedy_equals_teacher_forced_argmax(setup, memory_posemb):
  # With memory_posemb the cached and uncached paths must each add the embedding once.
  model, params, encoded = setup if memory_posemb == "none" else _setup(memory_posemb="sincos2d")
  prefix_len = jnp.array([1, 3, 5])
  raw = jnp.array([[2, 0, 0, 0, 0], [2, 7, 8, 0, 0], [2, 9, 10, 11, 12]])
  max_len = 10
  # eos_id outside the vocabulary: decode the full length without stopping.
  tokens = _greedy(model, params, encoded, raw, prefix_len, max_decode_len=max_len, eos_id=-1)
  assert tokens.shape == (3, max_len)
  assert len(np.unique(np.asarray(tokens))) > 2
  for b in range(3):
    n = int(prefix_len[b])
    seq = jnp.concatenate([raw[b, :n], tokens[b]])[None]
    mask_ar = (jnp.arange(seq.shape[1]) >= n).astype(jnp.int32)[None]
    ref = _teacher_forced(model, params, encoded[b:b + 1], seq, mask_ar)
    np.testing.assert_array_equal(tokens[b], ref[0, n - 1:n - 1 + max_len])


def test_stops_at_eos(setup):
  model, params, encoded = setup
  prefix = jnp.array([[2, 7], [2, 0], [2, 5]])
  prefix_len = jnp.array([2, 1, 2])
  free = _greedy(model, params, encoded, prefix, prefix_len, max_decode_len=6, eos_id=-1)
  eos = int(free[0, 2])
  tokens = np.asarray(_greedy(model, params, encoded, prefix, prefix_len, max_decode_len=6,
                              eos_id=eos))
  for row, free_row in zip(tokens, np.asarray(free)):
    hits = np.flatnonzero(free_row == eos)
    if hits.size:
      end = hits[0] + 1
      np.testing.assert_array_equal(row[:end], free_row[:end])
      np.testing.assert_array_equal(row[end:], PAD)
    else:
      np.testing.assert_array_equal(row, free_row)
  assert (tokens[0] == PAD).sum() >= 3


def test_prefix_from_batch():
  text = jnp.array([[2, 5, 6, 7, 1, 0], [2, 9, 1, 0, 0, 0], [2, 4, 0, 0, 0, 0]])
  mask_ar = jnp.array([[0, 0, 1, 1, 1, 0], [0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
  prefix, prefix_len = decoding.prefix_from_batch(text, mask_ar)
  np.testing.assert_array_equal(prefix_len, [2, 2, 2])
  np.testing.assert_array_equal(prefix, [[2, 5, 0, 0, 0, 0], [2, 9, 0, 0, 0, 0],
                                         [2, 4, 0, 0, 0, 0]])


def test_decode_length_checked(setup):
  model, params, encoded = setup
  with pytest.raises(ValueError, match="exceeds decoder.max_len 32"):
    decoding.greedy_decode(model, params, encoded, jnp.full((3, 4), 2), jnp.ones(3, jnp.int32),
                           max_decode_len=40)


def test_allowed_constrains_the_first_tokens(setup):
  model, params, encoded = setup
  prefix = jnp.array([[2, 7], [2, 0], [2, 5]])
  prefix_len = jnp.array([2, 1, 2])
  free = np.asarray(_greedy(model, params, encoded, prefix, prefix_len, max_decode_len=6,
                            eos_id=-1))
  # Rows 0 and 2: the first 3 tokens must come from ids 20..29; row 1 stays free.
  allowed = np.ones((3, 3, VOCAB + 1), bool)
  allowed[[0, 2], :, :20] = False
  tokens = np.asarray(_greedy(model, params, encoded, prefix, prefix_len, max_decode_len=6,
                              eos_id=-1, allowed=jnp.asarray(allowed)))
  assert (tokens[[0, 2], :3] >= 20).all()
  np.testing.assert_array_equal(tokens[1], free[1])
  # A constraint that admits every free choice changes nothing.
  same = np.zeros((3, 3, VOCAB + 1), bool)
  same[np.arange(3)[:, None], np.arange(3)[None], free[:, :3]] = True
  np.testing.assert_array_equal(
      _greedy(model, params, encoded, prefix, prefix_len, max_decode_len=6, eos_id=-1,
              allowed=jnp.asarray(same)), free)
