"""npz checkpoints: round trip, strict merge errors, SigLIP sub-trees, layouts, posemb."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from locvqa_jax.models import npz
from locvqa_jax.models import vit

IMAGE = jax.random.uniform(jax.random.PRNGKey(1), (2, 32, 32, 1), minval=-1, maxval=1)


def _init(model, image=IMAGE):
  return jax.jit(model.init)(jax.random.PRNGKey(0), image)["params"]


@pytest.fixture(scope="module")
def micro_map():
  model = vit.Model(variant="micro", pool_type="map")
  return model, _init(model)


def _features(model, params, image=IMAGE):
  return jax.jit(model.apply)({"params": params}, image)[1]


def test_round_trip(tmp_path, micro_map):
  model, params = micro_map
  path = str(tmp_path / "ckpt.npz")
  npz.save(path, params)
  with np.load(path) as data:
    assert "Transformer/encoderblock_1/MlpBlock_0/Dense_1/kernel" in data.files
  loaded = npz.load(path)
  jax.tree.map(np.testing.assert_array_equal, loaded, jax.device_get(params))
  fresh = jax.tree.map(jnp.zeros_like, params)
  restored = npz.load_encoder_init(path, fresh)
  jax.tree.map(np.testing.assert_array_equal, restored, jax.device_get(params))


def test_strict_error_lists_every_problem(tmp_path, micro_map):
  _, params = micro_map
  flat = {k: np.asarray(v) for k, v in npz.flatten(params).items()}
  del flat["MAPHead_0/probe"]
  del flat["Transformer/encoder_norm/scale"]
  flat["head/kernel"] = np.zeros((64, 3), np.float32)
  flat["txt_extra/bias"] = np.zeros((3,), np.float32)
  flat["embedding/bias"] = np.zeros((65,), np.float32)
  path = str(tmp_path / "bad.npz")
  np.savez(path, **flat)
  with pytest.raises(ValueError) as err:
    npz.load_encoder_init(path, params)
  msg = str(err.value)
  assert path in msg
  assert "missing in checkpoint (2):" in msg
  assert "    MAPHead_0/probe" in msg and "    Transformer/encoder_norm/scale" in msg
  assert "unexpected in checkpoint (2):" in msg
  assert "    head/kernel" in msg and "    txt_extra/bias" in msg
  assert "embedding/bias: checkpoint (65,) vs model (64,)" in msg


def test_dont_load_keeps_init(tmp_path, micro_map):
  model, params = micro_map
  flat = {k: np.asarray(v) + 1.0 for k, v in npz.flatten(params).items()
          if not k.startswith("MAPHead_0/")}
  flat["head/kernel"] = np.zeros((64, 1000), np.float32)
  path = str(tmp_path / "nohead.npz")
  np.savez(path, **flat)
  out = npz.load_encoder_init(path, params, dont_load=["MAPHead_0/.*", "head/.*"])
  np.testing.assert_array_equal(out["MAPHead_0"]["probe"], params["MAPHead_0"]["probe"])
  np.testing.assert_array_equal(out["embedding"]["kernel"],
                                np.asarray(params["embedding"]["kernel"]) + 1.0)


@pytest.mark.parametrize("root,suffix", [("params/img/", ""), ("img/", ""),
                                         ("params/img/", ":img"), ("img/", ":img")])
def test_siglip_image_tower(tmp_path, micro_map, root, suffix):
  model, params = micro_map
  flat = {root + k: np.asarray(v) for k, v in npz.flatten(params).items()}
  txt_root = root.replace("img", "txt")
  flat[txt_root + "Embed_0/embedding"] = np.zeros((10, 64), np.float32)
  flat[txt_root.replace("txt/", "") + "t"] = np.zeros((1,), np.float32)
  path = str(tmp_path / "siglip.npz")
  np.savez(path, **flat)
  out = npz.load_encoder_init(path + suffix, jax.tree.map(jnp.zeros_like, params))
  jax.tree.map(np.testing.assert_array_equal, out, jax.device_get(params))


def test_missing_subtree_is_named(tmp_path, micro_map):
  _, params = micro_map
  path = str(tmp_path / "x.npz")
  npz.save(path, {"img": params})
  with pytest.raises(KeyError, match="no sub-tree 'enc'"):
    npz.load_flat(path + ":enc")
  np.savez(str(tmp_path / "empty.npz"), a=np.zeros(1))
  with pytest.raises(KeyError, match="no ViT found"):
    npz.load_encoder_init(str(tmp_path / "empty.npz"), params)


@pytest.mark.parametrize("ckpt_scan,model_scan", [(False, True), (True, False)])
def test_scanned_unscanned_conversion(tmp_path, ckpt_scan, model_scan):
  src = vit.Model(variant="micro", pool_type="gap", scan=ckpt_scan)
  dst = vit.Model(variant="micro", pool_type="gap", scan=model_scan)
  src_params = _init(src)
  path = str(tmp_path / "layout.npz")
  npz.save(path, src_params)
  dst_params = npz.load_encoder_init(path, jax.eval_shape(dst.init, jax.random.PRNGKey(0),
                                                          IMAGE)["params"])
  key = "encoderblock" if model_scan else "encoderblock_0"
  assert key in dst_params["Transformer"]
  np.testing.assert_allclose(_features(src, src_params)["encoded"],
                             _features(dst, dst_params)["encoded"], atol=1e-5)


def test_posemb_resampled_on_load(tmp_path, micro_map):
  model, params = micro_map
  path = str(tmp_path / "lowres.npz")
  npz.save(path, params)
  big_image = jnp.zeros((1, 64, 64, 1))
  init = jax.eval_shape(model.init, jax.random.PRNGKey(0), big_image)["params"]
  out = npz.load_encoder_init(path, init)
  assert out["pos_embedding"].shape == (1, 16, 64)
  np.testing.assert_array_equal(out["Transformer"]["encoder_norm"]["scale"],
                                params["Transformer"]["encoder_norm"]["scale"])
  _, feats = model.apply({"params": out}, big_image)
  assert feats["encoded"].shape == (1, 16, 64)


def test_rgb_stem_loads_into_gray_model(tmp_path):
  rgb = vit.Model(variant="micro", pool_type="gap", channels=3)
  gray = vit.Model(variant="micro", pool_type="gap")
  rgb_params = _init(rgb)
  path = str(tmp_path / "rgb.npz")
  npz.save(path, rgb_params)
  gray_params = npz.load_encoder_init(path, _init(gray))
  assert gray_params["embedding"]["kernel"].shape == (16, 16, 1, 64)
  np.testing.assert_allclose(_features(rgb, rgb_params)["encoded"],
                             _features(gray, gray_params)["encoded"], atol=1e-4)
