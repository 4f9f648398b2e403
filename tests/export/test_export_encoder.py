"""tools/export_encoder.py: both formats from (encoder config, params), as load_encoder gives."""

import importlib.util
import json
import os

import jax
import numpy as np
import pytest

from locvqa_jax.export import hf_siglip
from locvqa_jax.models import npz
from locvqa_jax.models import vit

_TOOL = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "export_encoder.py")


def _tool():
  spec = importlib.util.spec_from_file_location("export_encoder", _TOOL)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="module")
def encoder():
  kwargs = dict(variant="micro", pool_type="none", posemb="sincos2d", channels=1)
  image = np.zeros((1, 32, 32, 1), np.float32)
  shapes = jax.eval_shape(vit.Model(**kwargs).init, jax.random.PRNGKey(0), image)["params"]
  rng = np.random.RandomState(0)
  return kwargs, jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32), shapes)


def test_npz_export_reloads_exactly(tmp_path, encoder):
  kwargs, params = encoder
  files = _tool().export(kwargs, params, "npz", str(tmp_path))
  assert [os.path.basename(f) for f in files] == ["encoder.npz", "vit_config.json"]
  with open(files[1]) as f:
    assert vit.Model(**json.load(f)).resolved() == vit.Model(**kwargs).resolved()
  fresh = jax.tree.map(np.zeros_like, params)
  loaded = npz.load_encoder_init(files[0], fresh)
  for key, value in npz.flatten(params).items():
    np.testing.assert_array_equal(npz.flatten(loaded)[key], value, err_msg=key)


def test_main_hf_uses_the_runs_resolution(tmp_path, encoder, monkeypatch):
  pytest.importorskip("safetensors")
  kwargs, params = encoder
  tool = _tool()
  calls = []

  def fake_load(workdir, step):
    calls.append((workdir, step))
    return dict(kwargs), params, 32

  monkeypatch.setattr(tool, "load_from_workdir", fake_load)
  out = str(tmp_path / "hf")
  assert tool.main(["--workdir", "W", "--step", "5", "--format", "hf", "--out", out]) == 0
  assert calls == [("W", 5)]
  _, back = hf_siglip.load_hf_encoder(out)
  with open(os.path.join(out, "config.json")) as f:
    assert json.load(f)["image_size"] == 32
  for key, value in npz.flatten(params).items():
    np.testing.assert_array_equal(npz.flatten(back)[key], value, err_msg=key)


def test_resolution_from_meta():
  tool = _tool()
  assert tool._resolution({"config": {"input": {"res": "r224"}}}) == 224
  assert tool._resolution({"config": {"input": {"res": 448}}}) == 448
  assert tool._resolution({"config": {}}) is None


def test_tool_on_a_workdir(tmp_path, encoder):
  checkpointing = pytest.importorskip("locvqa_jax.checkpointing")
  pytest.importorskip("safetensors")
  ml_collections = pytest.importorskip("ml_collections")
  kwargs, params = encoder
  workdir = str(tmp_path / "W")
  config = ml_collections.ConfigDict(
      {"model": {"encoder": kwargs}, "input": {"res": "r32"}})
  ckpt = checkpointing.Checkpointer(workdir, async_save=False)
  state = {"params": {"encoder": params, "decoder": {"w": np.ones((2,), np.float32)}},
           "step": np.int32(3)}
  ckpt.save(3, state, {"pos": 0}, checkpointing.make_meta(config, None, 3))
  ckpt.close()
  tool = _tool()
  for fmt in ("hf", "npz"):
    out = str(tmp_path / fmt)
    assert tool.main(["--workdir", workdir, "--format", fmt, "--out", out]) == 0
  _, back = hf_siglip.load_hf_encoder(str(tmp_path / "hf"))
  from_npz = npz.load(str(tmp_path / "npz" / "encoder.npz"))
  for key, value in npz.flatten(params).items():
    np.testing.assert_array_equal(npz.flatten(back)[key], value, err_msg=key)
    np.testing.assert_array_equal(npz.flatten(from_npz)[key], value, err_msg=key)
