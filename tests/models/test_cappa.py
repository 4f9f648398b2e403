"""CapPa encoder-decoder: parameters, prefix-LM masking, parallel prediction, NaN safety."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from locvqa_jax.models import cappa
from locvqa_jax.models import npz

VOCAB = 40
MASK_ID = VOCAB


@pytest.fixture(scope="module")
def micro():
  """A micro model with randomised (non-zero) logits layer and its encoded images."""
  model = cappa.Model(preset="micro", decoder=dict(vocab_size=VOCAB))
  image = jax.random.uniform(jax.random.PRNGKey(0), (2, 32, 32, 1), minval=-1, maxval=1)
  text = jnp.zeros((2, 12), jnp.int32)
  params = jax.jit(model.init)(jax.random.PRNGKey(1), image, text, jnp.zeros_like(text))["params"]
  dense = params["decoder"]["LogitsDense"]
  dense["kernel"] = jax.random.normal(jax.random.PRNGKey(2), dense["kernel"].shape)
  encoded = jax.jit(functools.partial(model.apply, method="encode"))({"params": params}, image)
  return model, params, image, encoded


def test_decoder_params(micro):
  model, params, _, _ = micro
  assert set(params) == {"encoder", "decoder"}
  dec = npz.flatten(params["decoder"])
  assert dec["EmbedTargets/embedding"].shape == (VOCAB + 1, 64)
  assert dec["pos_embedding"].shape == (1, 256, 64)
  assert dec["LogitsDense/kernel"].shape == (64, VOCAB)
  for name in ("SelfAttn", "CrossAttn"):
    for proj in ("query", "key", "value"):
      assert dec[f"EncDecBlock1/{name}/{proj}/kernel"].shape == (64, 2, 32)
  assert dec["EncDecBlock0/MLP/Dense_0/kernel"].shape == (64, 128)
  assert sum(x.size for x in jax.tree.leaves(params)) < 1_000_000
  fresh = jax.jit(model.init)(jax.random.PRNGKey(5), micro[2][:1, :16, :16],
                              jnp.zeros((1, 2), jnp.int32), jnp.zeros((1, 2), jnp.int32))["params"]
  np.testing.assert_array_equal(fresh["decoder"]["LogitsDense"]["kernel"], 0.0)


def test_sincos_location_embedding_init():
  feats = np.asarray(cappa.loc_sincos(1024, 64))
  np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 8.0, rtol=1e-5)
  unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
  similarity = [float(unit[500] @ unit[500 + d]) for d in (1, 10, 100)]
  assert similarity[0] > 0.95 and similarity[0] > similarity[1] > similarity[2]
  assert np.asarray(cappa.loc_sincos(16, 7)).shape == (16, 7)
  text = jnp.zeros((1, 4), jnp.int32)
  image = jnp.zeros((1, 16, 16, 1))
  init = lambda **kw: cappa.Model(preset="micro", decoder=dict(vocab_size=VOCAB, **kw)).init(
      jax.random.PRNGKey(0), image, text, text)["params"]["decoder"]["EmbedTargets"]["embedding"]
  normal, sincos = init(), init(loc_embed_init="sincos", loc_ids=(4, 30))
  np.testing.assert_allclose(sincos[4:34], cappa.loc_sincos(30, 64), atol=1e-6)
  np.testing.assert_array_equal(sincos[:4], normal[:4])
  np.testing.assert_array_equal(sincos[34:], normal[34:])
  with pytest.raises(ValueError, match="loc_embed_init='cosine'"):
    init(loc_embed_init="cosine")
  with pytest.raises(ValueError, match=r"loc_ids=\(4, 40\) runs past the 41"):
    init(loc_embed_init="sincos", loc_ids=(4, 40))


def test_memory_posemb_adds_sincos_to_the_cross_attended_tokens():
  encoded = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 64))
  tokens = jnp.array([[2, 5, 6], [2, 7, 0]])
  positions = jnp.broadcast_to(jnp.arange(3), (2, 3))
  mask = jnp.ones((2, 3, 3), bool)
  plain = cappa.Decoder(vocab_size=VOCAB)
  params = plain.init(jax.random.PRNGKey(1), tokens, positions, encoded, mask)["params"]
  params["LogitsDense"]["kernel"] = jax.random.normal(jax.random.PRNGKey(2), (64, VOCAB))
  with_pe = cappa.Decoder(vocab_size=VOCAB, memory_posemb="sincos2d")
  from locvqa_jax.models import vit  # pylint: disable=g-import-not-at-top
  want, _ = plain.apply({"params": params}, tokens, positions,
                        encoded + vit.posemb_sincos_2d(4, 4, 64), mask)
  got, _ = with_pe.apply({"params": params}, tokens, positions, encoded, mask)
  np.testing.assert_allclose(got, want, atol=1e-5)
  same, _ = plain.apply({"params": params}, tokens, positions, encoded, mask)
  assert np.abs(np.asarray(got) - np.asarray(same)).max() > 1e-3
  with pytest.raises(ValueError, match="square grid of encoder tokens .*got 15"):
    with_pe.apply({"params": params}, tokens, positions, encoded[:, :15], mask)
  with pytest.raises(ValueError, match="memory_posemb='learn'"):
    cappa.Decoder(vocab_size=VOCAB, memory_posemb="learn").apply(
        {"params": params}, tokens, positions, encoded, mask)


def test_no_bias_decoder_and_presets():
  model = cappa.Model(preset="cappa_b16", decoder=dict(vocab_size=1000))
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                          jax.ShapeDtypeStruct((1, 224, 224, 1), jnp.float32),
                          jax.ShapeDtypeStruct((1, 8), jnp.int32),
                          jax.ShapeDtypeStruct((1, 8), jnp.int32))["params"]
  dec = npz.flatten(shapes["decoder"])
  assert not [k for k in dec if k.startswith("EncDecBlock") and k.endswith("/bias")]
  assert len({k.split("/")[0] for k in dec if k.startswith("EncDecBlock")}) == 6
  enc = npz.flatten(shapes["encoder"])
  assert enc["Transformer/encoderblock_11/MlpBlock_0/Dense_0/kernel"].shape == (768, 3072)
  big = cappa.Model(preset="locca_so400m", decoder=dict(vocab_size=1000))
  big_shapes = jax.eval_shape(big.init, jax.random.PRNGKey(0),
                              jax.ShapeDtypeStruct((1, 224, 224, 1), jnp.float32),
                              jax.ShapeDtypeStruct((1, 8), jnp.int32),
                              jax.ShapeDtypeStruct((1, 8), jnp.int32))["params"]
  n_enc = sum(math.prod(x.shape) for x in jax.tree.leaves(big_shapes["encoder"]))
  assert 4.0e8 < n_enc < 4.3e8
  assert len([k for k in npz.flatten(big_shapes["decoder"])
              if k.endswith("SelfAttn/query/kernel")]) == 12


def test_model_errors():
  with pytest.raises(ValueError, match="Unknown cappa preset 'nano'"):
    cappa.Model(preset="nano", decoder=dict(vocab_size=3))
  with pytest.raises(ValueError, match="vocab_size"):
    cappa.Model(preset="micro")
  with pytest.raises(ValueError, match="Unknown model.decoder key 'num_layer'; did you mean "
                     "'num_layers'"):
    cappa.Model(preset="micro", decoder=dict(vocab_size=3, num_layer=2))
  with pytest.raises(ValueError, match="Unknown model.encoder key 'pool'"):
    cappa.Model(preset="micro", encoder=dict(pool="map"), decoder=dict(vocab_size=3))


def test_prefix_lm_mask():
  mask_ar = jnp.array([[0, 0, 0, 1, 1, 0]])
  tokens = jnp.array([[1, 1, 1, 1, 1, 0]])
  m = np.asarray(cappa.prefix_lm_mask(mask_ar, tokens)[0]).astype(int)
  np.testing.assert_array_equal(m, [[1, 1, 1, 0, 0, 0],
                                    [1, 1, 1, 0, 0, 0],
                                    [1, 1, 1, 0, 0, 0],
                                    [1, 1, 1, 1, 0, 0],
                                    [1, 1, 1, 1, 1, 0],
                                    [1, 1, 1, 1, 1, 1]])


def _decode(micro, text, mask_ar):
  model, params, _, encoded = micro
  return jax.jit(functools.partial(model.apply, method="decode"))(
      {"params": params}, encoded, text, mask_ar)


def test_prefix_outputs_independent_of_suffix(micro):
  text = jax.random.randint(jax.random.PRNGKey(3), (2, 10), 3, VOCAB)
  mask_ar = jnp.array([[0] * 4 + [1] * 6, [0] * 6 + [1] * 4])
  other = text.at[:, 6:].set((text[:, 6:] + 7) % VOCAB)
  other = other.at[0, 4:6].set(5)
  a, b = _decode(micro, text, mask_ar), _decode(micro, other, mask_ar)
  np.testing.assert_allclose(a[0, :4], b[0, :4], atol=1e-5)
  np.testing.assert_allclose(a[1, :6], b[1, :6], atol=1e-5)
  assert not np.allclose(a[0, 4:], b[0, 4:])
  # The suffix is causal: a change at position 8 leaves positions < 8 unchanged.
  late = text.at[:, 8].set((text[:, 8] + 1) % VOCAB)
  c = _decode(micro, late, mask_ar)
  np.testing.assert_allclose(a[:, :8], c[:, :8], atol=1e-5)
  assert not np.allclose(a[:, 8:], c[:, 8:])
  # A prefix token sees later prefix tokens (bidirectional prefix).
  d = _decode(micro, text.at[0, 3].set((text[0, 3] + 1) % VOCAB), mask_ar)
  assert not np.allclose(a[0, 0], d[0, 0])


def test_forward_call(micro):
  model, params, image, encoded = micro
  text = jnp.ones((2, 9), jnp.int32)
  logits, out = model.apply({"params": params}, image, text, jnp.zeros_like(text))
  assert logits.shape == (2, 9, VOCAB) and logits.dtype == jnp.float32
  np.testing.assert_allclose(out["encoded"], encoded, atol=1e-6)


def _batch():
  # bos=2, prefix, suffix, eos=1, pad=0; row 2 has no padding.
  text = jnp.array([[2, 10, 11, 12, 13, 14, 1, 0, 0],
                    [2, 20, 21, 22, 1, 0, 0, 0, 0],
                    [2, 30, 31, 32, 33, 34, 35, 36, 1]])
  mask_ar = jnp.array([[0, 0, 1, 1, 1, 1, 1, 0, 0],
                       [0, 0, 0, 1, 1, 0, 0, 0, 0],
                       [0, 0, 0, 1, 1, 1, 1, 1, 1]])
  return text, mask_ar, mask_ar


def test_parallel_prediction_prob_zero_is_identity():
  text, mask_ar, mask_loss = _batch()
  t, m, w = cappa.parallel_prediction_inputs(jax.random.PRNGKey(0), text, mask_ar, mask_loss,
                                             MASK_ID, 0.0, 1.0)
  np.testing.assert_array_equal(t, text[:, :-1])
  np.testing.assert_array_equal(m, mask_ar[:, :-1])
  np.testing.assert_array_equal(w, mask_loss[:, 1:])


def test_parallel_prediction_full_masking():
  text, mask_ar, mask_loss = _batch()
  t, m, w = cappa.parallel_prediction_inputs(jax.random.PRNGKey(0), text, mask_ar, mask_loss,
                                             MASK_ID, 1.0, 1.0)
  suffix = np.asarray(mask_ar[:, :-1]).astype(bool)
  np.testing.assert_array_equal(np.asarray(t)[suffix], MASK_ID)
  np.testing.assert_array_equal(np.asarray(t)[~suffix], np.asarray(text[:, :-1])[~suffix])
  np.testing.assert_array_equal(m, 0)
  np.testing.assert_array_equal(w, mask_loss[:, 1:])


def test_parallel_prediction_partial_masking():
  text, mask_ar, mask_loss = _batch()
  for seed in range(5):
    t, m, w = cappa.parallel_prediction_inputs(jax.random.PRNGKey(seed), text, mask_ar,
                                               mask_loss, MASK_ID, 1.0, 0.5)
    t, w = np.asarray(t), np.asarray(w)
    hidden = np.concatenate([t == MASK_ID, np.asarray(mask_ar[:, -1:]).astype(bool)], axis=1)
    n_suffix = np.asarray(mask_ar).sum(1)
    # ceil(0.5 * n) of the suffix tokens are hidden (rows 0, 1: inputs only; row 2's last
    # suffix token is also hidden as it is never an input).
    assert (t == MASK_ID).sum(1)[0] == math.ceil(0.5 * n_suffix[0])
    assert (t == MASK_ID).sum(1)[1] == math.ceil(0.5 * n_suffix[1])
    assert (t == MASK_ID)[2].sum() + hidden[2, -1] >= math.ceil(0.5 * n_suffix[2])
    np.testing.assert_array_equal(w, np.asarray(mask_loss[:, 1:]) * hidden[:, 1:])
    assert not np.any((t == MASK_ID) & ~np.asarray(mask_ar[:, :-1]).astype(bool))
    np.testing.assert_array_equal(m, 0)


def test_parallel_prediction_probability():
  text = jnp.tile(jnp.array([[2, 5, 6, 7, 1]]), (4000, 1))
  mask_ar = jnp.tile(jnp.array([[0, 0, 1, 1, 1]]), (4000, 1))
  _, m, _ = cappa.parallel_prediction_inputs(jax.random.PRNGKey(0), text, mask_ar, mask_ar,
                                             MASK_ID, 0.25, 1.0)
  share = float(np.mean(np.asarray(m).sum(1) == 0))
  assert 0.22 < share < 0.28


def test_no_nan_when_all_suffix_masked(micro):
  model, params, image, _ = micro
  text, mask_ar, mask_loss = _batch()
  text_in, mask_in, weights = cappa.parallel_prediction_inputs(
      jax.random.PRNGKey(0), text, mask_ar, mask_loss, MASK_ID, 1.0, 1.0)
  image3 = jnp.concatenate([image, image[:1]])
  tokens = (text[:, :-1] != 0).astype(jnp.int32)

  def loss_fn(p):
    logits, _ = model.apply({"params": p}, image3, text_in, mask_in, mask_tokens=tokens)
    logp = jax.nn.log_softmax(logits)
    nll = -jnp.take_along_axis(logp, text[:, 1:, None], axis=-1)[..., 0]
    return jnp.sum(nll * weights) / jnp.sum(weights)

  loss, grads = jax.jit(jax.value_and_grad(loss_fn))(params)
  assert np.isfinite(loss)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  # Even a mask that excludes every key of a row stays finite.
  logits = model.apply({"params": params}, micro[3], text_in[:2, :4],
                       jnp.zeros((2, 4), jnp.int32), mask_tokens=jnp.zeros((2, 4), jnp.int32),
                       method="decode")
  assert np.all(np.isfinite(logits))


def test_decoder_dropout_and_length_check(micro):
  _, params, _, encoded = micro
  model = cappa.Model(preset="micro", decoder=dict(vocab_size=VOCAB, dropout=0.3, max_len=8))
  text = jnp.ones((2, 8), jnp.int32)
  p = {**params, "decoder": {**params["decoder"],
                             "pos_embedding": params["decoder"]["pos_embedding"][:, :8]}}
  decode = jax.jit(functools.partial(model.apply, method="decode"), static_argnames="train")
  a = decode({"params": p}, encoded, text, jnp.ones_like(text))
  b = decode({"params": p}, encoded, text, jnp.ones_like(text), train=True,
             rngs={"dropout": jax.random.PRNGKey(0)})
  assert not np.allclose(a, b)
  with pytest.raises(ValueError, match="exceeds decoder.max_len 8"):
    model.apply({"params": p}, encoded, jnp.ones((2, 9), jnp.int32),
                jnp.ones((2, 9), jnp.int32), method="decode")


def test_remat_and_bf16_options(micro):
  _, params, image, _ = micro
  text = jax.random.randint(jax.random.PRNGKey(4), (2, 6), 3, VOCAB)
  mask_ar = jnp.array([[0, 0, 1, 1, 1, 1]] * 2)

  def grads(model, p):
    def loss(p):
      logits, _ = model.apply({"params": p}, image, text, mask_ar)
      return jnp.mean(logits ** 2)
    return jax.jit(jax.grad(loss))(p)

  plain = cappa.Model(preset="micro", decoder=dict(vocab_size=VOCAB))
  remat = cappa.Model(preset="micro",
                      encoder=dict(remat_policy="nothing_saveable"),
                      decoder=dict(vocab_size=VOCAB, remat_policy="nothing_saveable"))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
               grads(plain, params), grads(remat, params))
  bf16 = cappa.Model(preset="micro", encoder=dict(dtype_mm="bfloat16"),
                     decoder=dict(vocab_size=VOCAB, dtype_mm="bfloat16"))
  logits, _ = jax.jit(bf16.apply)({"params": params}, image, text, mask_ar)
  assert logits.dtype == jnp.float32 and np.all(np.isfinite(logits))
