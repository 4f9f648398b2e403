"""Difference-VQA model: image tokens, temporal embedding, blind flag, cache, init from CapPa."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from locvqa_jax import decoding
from locvqa_jax.models import cappa
from locvqa_jax.models import diff_vqa

VOCAB, RES = 30, 32


def _perturb(params, seed=2, scale=0.5):
  """Random weights everywhere (the logits layer starts at zero) so outputs vary."""
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  return jax.tree.unflatten(tree, [x + scale * jax.random.normal(k, x.shape)
                                   for x, k in zip(leaves, keys)])


def _model(**kw):
  return diff_vqa.Model(encoder=dict(variant="micro"), lm=dict(vocab_size=VOCAB, max_len=32),
                        lm_preset="micro", **kw)


def _inputs():
  images = jax.random.uniform(jax.random.PRNGKey(0), (3, 2, RES, RES, 1), minval=-1, maxval=1)
  text = jnp.array([[2, 5, 6, 7, 8, 1, 0, 0], [2, 9, 4, 1, 0, 0, 0, 0], [2, 4, 4, 4, 4, 4, 4, 1]])
  mask_ar = jnp.array([[0, 0, 0, 1, 1, 1, 0, 0], [0, 0, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1]])
  return images, text, mask_ar


@pytest.fixture(scope="module")
def setup():
  model = _model()
  images, text, mask_ar = _inputs()
  params = _perturb(jax.jit(model.init)(jax.random.PRNGKey(1), images, text, mask_ar)["params"])
  return model, params, images, text, mask_ar


_apply = jax.jit(lambda m, p, *a: m.apply({"params": p}, *a)[0], static_argnums=0)
_encode = jax.jit(lambda m, p, x: m.apply({"params": p}, x, method="encode"), static_argnums=0)


def test_parameter_tree(setup):
  model, params, *_ = setup
  assert sorted(params) == ["encoder", "lm", "projector", "temporal_embedding"]
  assert params["temporal_embedding"].shape == (2, 64)
  assert "Transformer" in params["encoder"] and "pos_embedding" in params["encoder"]
  assert sorted(params["lm"]) == ["Block0", "Block1", "EmbedTargets", "LayerNorm",
                                  "LogitsDense", "pos_embedding"]
  assert sorted(params["lm"]["Block0"]) == ["LayerNorm1", "LayerNorm2", "MLP", "SelfAttn"]
  assert params["lm"]["EmbedTargets"]["embedding"].shape == (VOCAB, 64)
  del model


def test_cached_features_give_the_same_logits_and_params(setup):
  model, params, images, text, mask_ar = setup
  feats = _encode(model, params, images)
  assert feats.shape == (3, 2, (RES // 16) ** 2, 64)
  np.testing.assert_allclose(_apply(model, params, feats, text, mask_ar),
                             _apply(model, params, images, text, mask_ar), rtol=1e-5, atol=1e-4)
  # Initialising from cached features still creates the encoder (for pixel inputs later).
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), feats, text, mask_ar)["params"]
  assert jax.tree.map(lambda x: x.shape, shapes) == jax.tree.map(lambda x: x.shape, params)


def test_swapping_reference_and_main_changes_the_output(setup):
  model, params, images, text, mask_ar = setup
  swapped = images[:, ::-1]
  a = _apply(model, params, images, text, mask_ar)
  b = _apply(model, params, swapped, text, mask_ar)
  assert np.abs(a - b).max() > 1e-2
  # Image tokens carry no language-model position: the temporal embedding alone tells the two
  # images apart, so without it a swap changes nothing.
  flat = dict(params, temporal_embedding=jnp.zeros_like(params["temporal_embedding"]))
  np.testing.assert_allclose(_apply(model, flat, images, text, mask_ar),
                             _apply(model, flat, swapped, text, mask_ar), rtol=1e-5, atol=1e-4)


def test_blind_model_has_no_image_tokens(setup):
  _, _, images, text, mask_ar = setup
  blind = _model(blind=True)
  params = _perturb(blind.init(jax.random.PRNGKey(1), images, text, mask_ar)["params"])
  assert sorted(params) == ["lm"]
  other = jax.random.uniform(jax.random.PRNGKey(5), images.shape, minval=-1, maxval=1)
  a = _apply(blind, params, images, text, mask_ar)
  np.testing.assert_array_equal(a, _apply(blind, params, other, text, mask_ar))
  np.testing.assert_array_equal(a, _apply(blind, params, jnp.zeros((3, 2, 1, 1)), text, mask_ar))


def test_answer_is_causal_and_the_prefix_bidirectional(setup):
  model, params, images, text, mask_ar = setup
  base = _apply(model, params, images, text, mask_ar)
  # Changing the last answer token (row 0, position 4) leaves earlier positions unchanged.
  changed = _apply(model, params, images, text.at[0, 4].set(11), mask_ar)
  np.testing.assert_allclose(changed[0, :4], base[0, :4], atol=1e-5)
  # Changing a later question token (position 2) changes the bos position: bidirectional prefix.
  changed = _apply(model, params, images, text.at[0, 2].set(11), mask_ar)
  assert np.abs(changed[0, 0] - base[0, 0]).max() > 1e-3


def test_frozen_encoder_gets_no_gradient(setup):
  model, params, images, text, mask_ar = setup

  def loss(p):
    return jnp.sum(model.apply({"params": p}, images, text, mask_ar)[0] ** 2)

  grads = jax.jit(jax.grad(loss))(params)
  assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads["encoder"]))
  assert float(jnp.abs(grads["temporal_embedding"]).max()) > 0
  unfrozen = _model(freeze_encoder=False)
  grads = jax.jit(jax.grad(lambda p: jnp.sum(
      unfrozen.apply({"params": p}, images, text, mask_ar)[0] ** 2)))(params)
  assert float(jnp.abs(grads["encoder"]["embedding"]["kernel"]).max()) > 0


_greedy = jax.jit(decoding.greedy_decode, static_argnums=0,
                  static_argnames=("max_decode_len", "eos_id", "pad_id", "use_cache"))


@pytest.mark.parametrize("blind", [False, True])
def test_cached_decoding_equals_uncached(setup, blind):
  model, params, images, *_ = setup
  if blind:
    model = _model(blind=True)
    params = {"lm": params["lm"]}
  feats = images if blind else _encode(model, params, images)
  prefix = jnp.array([[2, 7, 0], [2, 0, 0], [2, 5, 6]])
  prefix_len = jnp.array([2, 1, 3])
  kw = dict(max_decode_len=10, eos_id=-1)
  cached = _greedy(model, params, feats, prefix, prefix_len, **kw)
  uncached = _greedy(model, params, feats, prefix, prefix_len, use_cache=False, **kw)
  assert len(np.unique(np.asarray(cached))) > 2
  np.testing.assert_array_equal(cached, uncached)
  # Pixels and cached features decode the same.
  if not blind:
    np.testing.assert_array_equal(_greedy(model, params, images, prefix, prefix_len, **kw),
                                  cached)


def _assert_cached_decoding_equals_uncached(model, params, images):
  prefix, prefix_len = jnp.array([[2, 7, 0], [2, 0, 0], [2, 5, 6]]), jnp.array([2, 1, 3])
  kw = dict(max_decode_len=8, eos_id=-1)
  np.testing.assert_array_equal(
      _greedy(model, params, images, prefix, prefix_len, **kw),
      _greedy(model, params, images, prefix, prefix_len, use_cache=False, **kw))


def test_difference_tokens_and_image_positions():
  images, text, mask_ar = _inputs()
  model = _model(normalize_image=True, difference_tokens=True, image_positions=True)
  params = _perturb(model.init(jax.random.PRNGKey(1), images, text, mask_ar)["params"])
  n = (RES // 16) ** 2
  assert params["temporal_embedding"].shape == (2, 64)
  assert params["image_pos"]["embedding"].shape == (n, 64)
  tokens = model.apply({"params": params}, images, method="image_tokens")
  assert tokens.shape == (3, 2 * n, 64)
  # Block 0 is the projected (main - reference) of the standardised tokens, block 1 the main.
  feats = model.apply({"params": params}, images, method="encode")
  norm, pos = params["image_norm"], params["image_pos"]["embedding"]
  std = (feats - norm["mean"]) * norm["inv_std"]
  project = lambda x: model.apply({"params": params}, x, method=lambda m, y: m.projector(y))
  temporal = params["temporal_embedding"]
  np.testing.assert_allclose(tokens[:, :n], project(std[:, 1] - std[:, 0] + pos + temporal[0]),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(tokens[:, n:], project(std[:, 1] + pos + temporal[1]),
                             rtol=1e-5, atol=1e-5)
  _assert_cached_decoding_equals_uncached(model, params, images)


def test_image_pool_averages_windows_of_the_patch_grid():
  feats = jnp.arange(2 * 2 * 16 * 3, dtype=jnp.float32).reshape(2, 2, 16, 3)  # a 4 x 4 grid
  pooled = diff_vqa.pool_tokens(feats, 2)
  assert pooled.shape == (2, 2, 4, 3)
  grid = np.asarray(feats).reshape(2, 2, 4, 4, 3)
  np.testing.assert_allclose(pooled[:, :, 1], grid[:, :, 0:2, 2:4].mean(axis=(2, 3)))
  np.testing.assert_allclose(pooled[:, :, 2], grid[:, :, 2:4, 0:2].mean(axis=(2, 3)))
  with pytest.raises(ValueError, match="model.image_pool=3: the 16 image tokens"):
    diff_vqa.pool_tokens(feats, 3)
  # In the model: after ImageNorm, a quarter of the tokens per image, positions per pooled token.
  images, text, mask_ar = _inputs()
  res = 64  # a 4 x 4 patch grid
  images = jax.image.resize(images, (3, 2, res, res, 1), "nearest")
  model = _model(normalize_image=True, difference_tokens=True, image_positions=True,
                 image_pool=2)
  params = _perturb(model.init(jax.random.PRNGKey(1), images, text, mask_ar)["params"])
  assert params["image_norm"]["mean"].shape == (16, 64)
  assert params["image_pos"]["embedding"].shape == (4, 64)
  tokens = model.apply({"params": params}, images, method="image_tokens")
  assert tokens.shape == (3, 2 * 4, 64)
  feats = model.apply({"params": params}, images, method="encode")
  std = diff_vqa.pool_tokens((feats - params["image_norm"]["mean"])
                             * params["image_norm"]["inv_std"], 2)
  project = lambda x: model.apply({"params": params}, x, method=lambda m, y: m.projector(y))
  np.testing.assert_allclose(
      tokens[:, 4:], project(std[:, 1] + params["image_pos"]["embedding"]
                             + params["temporal_embedding"][1]), rtol=1e-5, atol=1e-5)
  _assert_cached_decoding_equals_uncached(model, params, images)


def test_main_pool_averages_only_the_main_block():
  images, text, mask_ar = _inputs()
  images = jax.image.resize(images, (3, 2, 64, 64, 1), "nearest")  # a 4 x 4 patch grid
  model = _model(normalize_image=True, difference_tokens=True, image_positions=True,
                 main_pool=2)
  params = _perturb(model.init(jax.random.PRNGKey(1), images, text, mask_ar)["params"])
  assert params["image_pos"]["embedding"].shape == (16, 64)
  tokens = model.apply({"params": params}, images, method="image_tokens")
  assert tokens.shape == (3, 16 + 4, 64)
  feats = model.apply({"params": params}, images, method="encode")
  std = (feats - params["image_norm"]["mean"]) * params["image_norm"]["inv_std"]
  pos, temporal = params["image_pos"]["embedding"], params["temporal_embedding"]
  project = lambda x: model.apply({"params": params}, x, method=lambda m, y: m.projector(y))
  np.testing.assert_allclose(tokens[:, :16], project(std[:, 1] - std[:, 0] + pos + temporal[0]),
                             rtol=1e-5, atol=1e-5)
  main = diff_vqa.pool_tokens((std[:, 1:] + pos + temporal[1]), 2)[:, 0]
  np.testing.assert_allclose(tokens[:, 16:], project(main), rtol=1e-5, atol=1e-5)
  _assert_cached_decoding_equals_uncached(model, params, images)
  with pytest.raises(ValueError, match="model.main_pool=3: the 16 image tokens"):
    _model(main_pool=3).init(jax.random.PRNGKey(1), images, text, mask_ar)
  # With image_pool, main_pool pools the pooled grid: 4 + 1 tokens from a 4 x 4 grid.
  both = _model(image_pool=2, main_pool=2)
  both_params = both.init(jax.random.PRNGKey(1), images, text, mask_ar)["params"]
  assert both.apply({"params": both_params}, images, method="image_tokens").shape == (3, 5, 64)


def test_lm_starts_from_the_pretraining_decoder():
  lm_model = _model()
  cap = cappa.Model(preset="micro", decoder=dict(vocab_size=VOCAB, max_len=16))
  images = jnp.zeros((1, 2, RES, RES, 1))
  text = jnp.zeros((1, 4), jnp.int32)
  lm_params = lm_model.init(jax.random.PRNGKey(0), images, text, text)["params"]["lm"]
  dec = _perturb(cap.init(jax.random.PRNGKey(1), images[:, 0], text, text)["params"])["decoder"]
  new, report = diff_vqa.lm_params_from_cappa(lm_params, dec)
  np.testing.assert_array_equal(new["EmbedTargets"]["embedding"],
                                dec["EmbedTargets"]["embedding"][:VOCAB])
  np.testing.assert_array_equal(new["Block1"]["SelfAttn"]["query"]["kernel"],
                                dec["EncDecBlock1"]["SelfAttn"]["query"]["kernel"])
  np.testing.assert_array_equal(new["Block0"]["LayerNorm2"]["scale"],
                                dec["EncDecBlock0"]["LayerNorm3"]["scale"])
  np.testing.assert_array_equal(new["Block0"]["MLP"]["Dense_1"]["kernel"],
                                dec["EncDecBlock0"]["MLP"]["Dense_1"]["kernel"])
  np.testing.assert_array_equal(new["LogitsDense"]["kernel"], dec["LogitsDense"]["kernel"])
  # 16 decoder positions into 32: the first 16 rows copied, the rest kept.
  np.testing.assert_array_equal(new["pos_embedding"][0, :16], dec["pos_embedding"][0])
  np.testing.assert_array_equal(new["pos_embedding"][0, 16:], lm_params["pos_embedding"][0, 16:])
  assert report["kept"] == []
  assert not any("CrossAttn" in p for p in report["copied"])


def test_unknown_keys_and_missing_vocab_fail_loudly():
  with pytest.raises(ValueError, match="Unknown model.lm key 'num_layer'.*num_layers"):
    diff_vqa.Model(encoder=dict(variant="micro"), lm=dict(vocab_size=8, num_layer=2))
  with pytest.raises(ValueError, match="lm.vocab_size"):
    diff_vqa.Model(encoder=dict(variant="micro"), lm=dict())
  with pytest.raises(ValueError, match="pool_type='map'"):
    diff_vqa.Model(encoder=dict(variant="micro", pool_type="map"), lm=dict(vocab_size=8))
  model = _model()
  with pytest.raises(ValueError, match=r"images \[B, 2, R, R, C\]"):
    model.init(jax.random.PRNGKey(0), jnp.zeros((1, 3, 4, 64)), jnp.zeros((1, 4), jnp.int32),
               jnp.zeros((1, 4), jnp.int32))
