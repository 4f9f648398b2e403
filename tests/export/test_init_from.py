"""load_encoder_weights: npz files and Hugging Face SigLIP folders into a model's params."""

import jax
import numpy as np
import pytest

from locvqa_jax.export import hf_siglip
from locvqa_jax.models import init_from
from locvqa_jax.models import npz
from locvqa_jax.models import vit

pytest.importorskip("safetensors")

IMAGE = np.random.RandomState(0).uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32)


def _params(model, seed):
  """Random params of the model's shapes, without compiling its init."""
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), IMAGE)["params"]
  rng = np.random.RandomState(seed)
  return jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32), shapes)


@pytest.fixture(scope="module")
def source():
  kwargs = dict(variant="w32-d2-m64-h2/8", pool_type="map", posemb="learn")
  return kwargs, _params(vit.Model(**kwargs), 1)


def _assert_tree_equal(got, want):
  got, want = npz.flatten(got), npz.flatten(jax.device_get(want))
  assert sorted(got) == sorted(want)
  for key in want:
    np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(want[key]), err_msg=key)


def test_hf_folder_into_scanned_model(tmp_path, source):
  kwargs, params = source
  hf_siglip.save(str(tmp_path), kwargs, params)
  target = vit.Model(**kwargs, scan=True)
  init = jax.eval_shape(target.init, jax.random.PRNGKey(0), IMAGE)["params"]
  loaded = init_from.load_encoder_weights(str(tmp_path), init)
  _assert_tree_equal(vit.scan_to_loop(loaded), params)


def test_hf_folder_strict_errors_and_dont_load(tmp_path, source):
  kwargs, params = source
  hf_siglip.save(str(tmp_path), kwargs, params)
  target = vit.Model(**{**kwargs, "pool_type": "none"})
  init = _params(target, 7)
  with pytest.raises(ValueError) as err:
    init_from.load_encoder_weights(str(tmp_path), init)
  assert str(tmp_path) in str(err.value)
  assert "unexpected in checkpoint" in str(err.value) and "MAPHead_0/probe" in str(err.value)
  loaded = init_from.load_encoder_weights(str(tmp_path), init, dont_load=["MAPHead_0/.*"])
  want = {k: v for k, v in params.items() if k != "MAPHead_0"}
  _assert_tree_equal(loaded, want)


def test_npz_path_and_bad_directory(tmp_path, source):
  kwargs, params = source
  path = str(tmp_path / "enc.npz")
  npz.save(path, {"img": params})
  loaded = init_from.load_encoder_weights(path + ":img", jax.tree.map(np.zeros_like, params))
  _assert_tree_equal(loaded, params)
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(FileNotFoundError, match="without config.json"):
    init_from.load_encoder_weights(str(empty), params)
