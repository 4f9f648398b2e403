"""ViT: big_vision parameter names/shapes, variants, outputs, layouts, posemb."""

import math

import big_vision_params as ref
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from locvqa_jax.models import npz
from locvqa_jax.models import vit


def _shapes(model, image_shape):
  image = jax.ShapeDtypeStruct(image_shape, jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), image)
  return {k: tuple(v.shape) for k, v in npz.flatten(variables["params"]).items()}


@pytest.mark.parametrize("scan", [False, True])
@pytest.mark.parametrize("variant,spec,res", [("B/16", ref.B16, 224),
                                              ("So400m/14", ref.SO400M14, 224)])
def test_param_names_and_shapes_match_big_vision(variant, spec, res, scan):
  model = vit.Model(variant=variant, pool_type="map", scan=scan)
  got = _shapes(model, (1, res, res, spec["channels"]))
  want = ref.vit_shapes(**spec, scan=scan)
  assert sorted(set(got) - set(want)) == []
  assert sorted(set(want) - set(got)) == []
  assert {k: got[k] for k in want} == want


def test_so400m_parameter_count_and_head():
  model = vit.Model(variant="So400m/14", pool_type="map", num_classes=10, channels=3)
  got = _shapes(model, (1, 224, 224, 1))
  want = ref.vit_shapes(**ref.SO400M14, scan=False, num_classes=10)
  assert got == want
  total = sum(math.prod(s) for k, s in got.items() if not k.startswith("head/"))
  assert total == ref.SO400M14_MAP_NUM_PARAMS


def test_decode_variant():
  assert vit.decode_variant("So400m/14") == dict(width=1152, depth=27, mlp_dim=4304,
                                                 num_heads=16, patch_size=(14, 14))
  assert vit.decode_variant("B") == dict(width=768, depth=12, mlp_dim=3072, num_heads=12)
  assert vit.decode_variant("micro")["patch_size"] == (16, 16)
  assert vit.decode_variant("w96-d3-m192-h4/8") == dict(width=96, depth=3, mlp_dim=192,
                                                        num_heads=4, patch_size=(8, 8))
  for name in ("mu", "Ti", "S", "M", "L", "H", "g", "G"):
    assert vit.decode_variant(name + "/16")["patch_size"] == (16, 16)
  with pytest.raises(ValueError, match="Unknown ViT variant 'Q/16'"):
    vit.decode_variant("Q/16")


def test_explicit_fields_override_variant():
  model = vit.Model(variant="micro", depth=3, patch_size=(8, 8))
  cfg = model.resolved()
  assert (cfg["width"], cfg["depth"], cfg["patch_size"]) == (64, 3, (8, 8))


@pytest.mark.parametrize("pool,pre_logits_shape", [("none", (2, 16, 64)), ("gap", (2, 64)),
                                                   ("map", (2, 64)), ("tok", (2, 64))])
def test_outputs(pool, pre_logits_shape):
  model = vit.Model(variant="micro", pool_type=pool, num_classes=7)
  image = jax.random.uniform(jax.random.PRNGKey(1), (2, 64, 64, 1), minval=-1, maxval=1)
  variables = model.init(jax.random.PRNGKey(0), image)
  x, out = model.apply(variables, image)
  assert out["stem"].shape == (2, 4, 4, 64)
  assert out["with_posemb"].shape == (2, 16, 64)
  assert out["encoded"].shape == (2, 17 if pool == "tok" else 16, 64)
  assert out["pre_logits"].shape == pre_logits_shape
  assert out["logits"].shape == pre_logits_shape[:-1] + (7,)
  # head_zeroinit: the head starts at exactly zero.
  np.testing.assert_array_equal(x, 0.0)
  assert ("cls" in variables["params"]) == (pool == "tok")


def test_sincos_has_no_pos_embedding_param():
  model = vit.Model(variant="micro", posemb="sincos2d", pool_type="gap")
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 1)))
  assert "pos_embedding" not in variables["params"]
  pe = vit.posemb_sincos_2d(2, 2, 8)
  assert pe.shape == (1, 4, 8)
  np.testing.assert_allclose(pe[0, 0], [0, 0, 1, 1, 0, 0, 1, 1], atol=1e-6)


def test_scanned_and_unscanned_compute_the_same():
  image = jax.random.uniform(jax.random.PRNGKey(1), (2, 32, 32, 1), minval=-1, maxval=1)
  loop = vit.Model(variant="micro", pool_type="map")
  scan = vit.Model(variant="micro", pool_type="map", scan=True,
                   remat_policy="nothing_saveable")
  params = loop.init(jax.random.PRNGKey(0), image)["params"]
  scanned = vit.loop_to_scan(params)
  _, out_loop = loop.apply({"params": params}, image)
  _, out_scan = scan.apply({"params": scanned}, image)
  np.testing.assert_allclose(out_loop["pre_logits"], out_scan["pre_logits"], atol=1e-5)
  back = vit.scan_to_loop(scanned)
  jax.tree.map(np.testing.assert_array_equal, back, params)


def test_rgb_model_accepts_gray_images():
  model = vit.Model(variant="micro", pool_type="gap", channels=3)
  gray = jax.random.uniform(jax.random.PRNGKey(1), (1, 32, 32, 1))
  variables = model.init(jax.random.PRNGKey(0), gray)
  assert variables["params"]["embedding"]["kernel"].shape == (16, 16, 3, 64)
  _, a = model.apply(variables, gray)
  _, b = model.apply(variables, jnp.repeat(gray, 3, axis=-1))
  np.testing.assert_allclose(a["encoded"], b["encoded"], atol=1e-6)


def test_bf16_compute():
  model = vit.Model(variant="micro", pool_type="none", dtype_mm="bfloat16")
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 1)))
  assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(variables))
  _, out = model.apply(variables, jnp.ones((1, 32, 32, 1)))
  assert out["stem"].dtype == jnp.bfloat16
  assert np.all(np.isfinite(np.asarray(out["encoded"], np.float32)))


def test_dropout_needs_train_flag():
  model = vit.Model(variant="micro", pool_type="gap", dropout=0.5)
  image = jnp.ones((1, 32, 32, 1))
  variables = model.init(jax.random.PRNGKey(0), image)
  a, _ = model.apply(variables, image)
  b, _ = model.apply(variables, image)
  np.testing.assert_array_equal(a, b)
  c, _ = model.apply(variables, image, train=True, rngs={"dropout": jax.random.PRNGKey(3)})
  assert not np.allclose(a, c)


def test_resample_posemb():
  old = np.random.RandomState(0).randn(1, 16, 8).astype(np.float32)
  assert vit.resample_posemb(old, (1, 16, 8)) is old
  new = vit.resample_posemb(old, (1, 64, 8))
  assert new.shape == (1, 64, 8) and new.dtype == np.float32
  # A constant grid stays constant under bilinear resampling.
  const = np.ones((1, 9, 4), np.float32)
  np.testing.assert_allclose(vit.resample_posemb(const, (1, 25, 4)), 1.0, atol=1e-6)
  with pytest.raises(ValueError, match="not a square grid"):
    vit.resample_posemb(np.zeros((1, 10, 4)), (1, 16, 4))
