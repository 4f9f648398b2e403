"""Beam search: one beam is greedy, cached equals uncached, scores, no-repeat n-grams."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from locvqa_jax import decoding
from locvqa_jax.models import cappa

VOCAB = 30


@pytest.fixture(scope="module")
def setup():
  model = cappa.Model(preset="micro", decoder=dict(vocab_size=VOCAB, max_len=32))
  image = jax.random.uniform(jax.random.PRNGKey(0), (3, 32, 32, 1), minval=-1, maxval=1)
  text = jnp.zeros((3, 8), jnp.int32)
  params = jax.jit(model.init)(jax.random.PRNGKey(1), image, text, text)["params"]
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
  params = jax.tree.unflatten(tree, [x + 0.5 * jax.random.normal(k, x.shape)
                                     for x, k in zip(leaves, keys)])
  encoded = jax.jit(lambda p, x: model.apply({"params": p}, x, method="encode"))(params, image)
  prefix = jnp.array([[2, 7, 0], [2, 0, 0], [2, 5, 6]])
  prefix_len = jnp.array([2, 1, 3])
  return model, params, encoded, prefix, prefix_len


_STATIC = ("max_decode_len", "beam_size", "length_penalty", "no_repeat_ngram_size", "eos_id",
           "pad_id", "use_cache")
_beam = jax.jit(decoding.beam_search, static_argnums=0, static_argnames=_STATIC)
_greedy = jax.jit(decoding.greedy_decode, static_argnums=0,
                  static_argnames=("max_decode_len", "eos_id", "pad_id", "use_cache"))


def _eos_that_occurs(setup):
  """A token greedy decoding emits mid-sequence in some rows, used as eos."""
  model, params, encoded, prefix, prefix_len = setup
  free = np.asarray(_greedy(model, params, encoded, prefix, prefix_len, max_decode_len=8,
                            eos_id=-1))
  return int(free[0, 2])


@pytest.mark.parametrize("stop", [False, True])
def test_one_beam_equals_greedy(setup, stop):
  model, params, encoded, prefix, prefix_len = setup
  eos = _eos_that_occurs(setup) if stop else -1
  greedy = _greedy(model, params, encoded, prefix, prefix_len, max_decode_len=8, eos_id=eos)
  beam, _ = _beam(model, params, encoded, prefix, prefix_len, max_decode_len=8, beam_size=1,
                  eos_id=eos)
  np.testing.assert_array_equal(beam, greedy)
  if stop:
    assert (np.asarray(beam) == 0).any()  # Some row stopped early and was padded.


def test_cached_beam_equals_uncached(setup):
  model, params, encoded, prefix, prefix_len = setup
  eos = _eos_that_occurs(setup)
  kw = dict(max_decode_len=8, beam_size=3, eos_id=eos, length_penalty=0.6)
  a, sa = _beam(model, params, encoded, prefix, prefix_len, **kw)
  b, sb = _beam(model, params, encoded, prefix, prefix_len, use_cache=False, **kw)
  np.testing.assert_array_equal(a, b)
  np.testing.assert_allclose(sa, sb, rtol=1e-5)


def _sequence_logprob(model, params, encoded, prefix, prefix_len, tokens, eos):
  """Teacher-forced summed log-probability and length (eos included) of generated tokens."""
  out = []
  for b in range(tokens.shape[0]):
    n = int(prefix_len[b])
    gen = [int(t) for t in tokens[b]]
    length = gen.index(eos) + 1 if eos in gen else len(gen)
    seq = jnp.asarray([list(np.asarray(prefix[b, :n])) + gen[:length]])
    mask_ar = (jnp.arange(seq.shape[1]) >= n).astype(jnp.int32)[None]
    logits = model.apply({"params": params}, encoded[b:b + 1], seq, mask_ar, method="decode")
    lp = jax.nn.log_softmax(logits[0, n - 1:n - 1 + length])
    out.append((float(jnp.sum(lp[jnp.arange(length), seq[0, n:]])), length))
  return out


def test_scores_are_length_normalised_log_probabilities(setup):
  model, params, encoded, prefix, prefix_len = setup
  eos = _eos_that_occurs(setup)
  alpha = 0.7
  tokens, scores = _beam(model, params, encoded, prefix, prefix_len, max_decode_len=8,
                         beam_size=4, eos_id=eos, length_penalty=alpha)
  beam_lp = _sequence_logprob(model, params, encoded, prefix, prefix_len, np.asarray(tokens), eos)
  for b, (lp, n) in enumerate(beam_lp):
    assert scores[b] == pytest.approx(lp / n ** alpha, rel=1e-4, abs=1e-4)


def test_no_repeat_ngram_mask():
  seqs = jnp.array([[[5, 6, 5, 0, 0]]])  # written up to t = 3
  mask = decoding.no_repeat_ngram_mask(seqs, jnp.int32(3), 2, 8)
  # The last token is 5 and the bigram (5, 6) occurred: 6 is banned, nothing else.
  assert np.flatnonzero(np.asarray(mask[0, 0])).tolist() == [6]
  mask = decoding.no_repeat_ngram_mask(seqs, jnp.int32(3), 1, 8)
  assert np.flatnonzero(np.asarray(mask[0, 0])).tolist() == [5, 6]
  mask = decoding.no_repeat_ngram_mask(seqs, jnp.int32(1), 2, 8)
  assert not np.asarray(mask).any()


def test_no_repeat_ngram_beam_output_has_no_repeats(setup):
  model, params, encoded, prefix, prefix_len = setup
  tokens, _ = _beam(model, params, encoded, prefix, prefix_len, max_decode_len=12, beam_size=3,
                    eos_id=-1, no_repeat_ngram_size=2)
  free, _ = _beam(model, params, encoded, prefix, prefix_len, max_decode_len=12, beam_size=3,
                  eos_id=-1)
  has_repeat = lambda row: len(set(zip(row, row[1:]))) < len(row) - 1
  assert any(has_repeat(list(np.asarray(r))) for r in free)  # The constraint does something.
  for row in np.asarray(tokens):
    assert not has_repeat(list(row))
