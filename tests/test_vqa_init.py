"""Difference-VQA encoder_init from a local Hugging Face SigLIP folder (locvqa_jax/vqa_init.py)."""

import os

import jax
import numpy as np
import pytest

from locvqa_jax import config as config_lib
from locvqa_jax import features_cache
from locvqa_jax import vqa_init
from locvqa_jax.data import tasks
from locvqa_jax.export import hf_siglip
from locvqa_jax.models import npz
from locvqa_jax.models import vit

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RES = 32


def _config(encoder_init: str, arg: str = ""):
  spec = os.path.join(REPO, "configs", "diff_vqa.py") + f":encoder_init={encoder_init},res={RES}"
  return config_lib.load_config_file(spec + ("," + arg if arg else ""))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """A micro ViT (learned posemb, 1-channel stem) exported as a SiglipVisionModel folder."""
  kwargs = dict(width=64, depth=2, mlp_dim=128, num_heads=2, patch_size=(16, 16), posemb="learn",
                pool_type="none", channels=1)
  image = np.zeros((1, RES, RES, 1), np.float32)
  shapes = jax.eval_shape(vit.Model(**kwargs).init, jax.random.PRNGKey(0), image)["params"]
  rng = np.random.RandomState(0)
  params = jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32), shapes)
  folder = str(tmp_path_factory.mktemp("hf") / "siglip_micro")
  hf_siglip.save(folder, kwargs, params)
  return folder, kwargs, params


def test_hf_folder_parses_as_its_own_kind(exported):
  folder, _, _ = exported
  assert vqa_init.parse_encoder_init(folder) == vqa_init.EncoderInit("hf", folder, None)
  with pytest.raises(ValueError, match="Hugging Face folder, which has no steps"):
    vqa_init.parse_encoder_init(folder + ":100")


def test_config_takes_the_encoder_shape_from_config_json(exported):
  folder, kwargs, _ = exported
  enc = _config(folder).model.encoder.to_dict()
  assert "variant" not in enc
  for key in ("width", "depth", "mlp_dim", "num_heads", "posemb"):
    assert enc[key] == kwargs[key], key
  assert tuple(enc["patch_size"]) == (16, 16)
  assert (enc["pool_type"], enc["channels"], enc["dropout"]) == ("none", 1, 0.0)
  assert _config(folder, "variant=B/16").model.encoder.width == 64  # variant is unused here.


def test_encoder_params_equal_the_exported_ones_exactly(exported):
  folder, _, params = exported
  loaded = npz.flatten(vqa_init.load_encoder_params(_config(folder)))
  want = npz.flatten(params)
  assert sorted(loaded) == sorted(want)
  for name, value in want.items():
    np.testing.assert_array_equal(np.asarray(loaded[name]), value, err_msg=name)


def test_transformers_folder_with_head_and_rgb_stem_loads(tmp_path):
  transformers = pytest.importorskip("transformers")
  torch = pytest.importorskip("torch")
  torch.manual_seed(0)
  cfg = transformers.SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=2, image_size=RES, patch_size=8,
                                        num_channels=3)
  model = transformers.SiglipVisionModel(cfg).eval()
  model.save_pretrained(str(tmp_path / "tf"))
  c = _config(str(tmp_path / "tf"))
  assert (c.model.encoder.width, c.model.encoder.channels) == (32, 1)
  loaded = npz.flatten(vqa_init.load_encoder_params(c))
  assert not any(k.startswith("MAPHead_0/") for k in loaded)
  state = {k.removeprefix("vision_model."): v.numpy() for k, v in model.state_dict().items()}
  stem = state["embeddings.patch_embedding.weight"].transpose(2, 3, 1, 0).sum(2, keepdims=True)
  np.testing.assert_allclose(loaded["embedding/kernel"], stem, rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(loaded["Transformer/encoderblock_0/MlpBlock_0/Dense_0/kernel"],
                                state["encoder.layers.0.mlp.fc1.weight"].T)


def test_folder_without_config_json_is_named(tmp_path):
  folder = tmp_path / "weights_only"
  folder.mkdir()
  (folder / "model.safetensors").write_bytes(b"")
  with pytest.raises(FileNotFoundError, match=r"weights_only is not a pretraining workdir.*"
                                              r"no config\.json"):
    vqa_init.parse_encoder_init(str(folder))
  with pytest.raises(FileNotFoundError, match="no config.json"):
    _config(str(folder))


def test_features_cache_sits_beside_the_folder_and_follows_its_weights(exported, monkeypatch):
  folder, kwargs, params = exported
  monkeypatch.setattr(tasks, "dataset_fingerprint", lambda *a: ["data", 1])
  c = _config(folder)
  first = features_cache.directory(c)
  assert os.path.dirname(first) == folder + ".features_cache"
  assert os.path.basename(first).startswith(f"r{RES}_")
  assert features_cache.directory(_config(folder + "/")) == first
  hf_siglip.save(folder, kwargs, jax.tree.map(lambda a: a + 1, params))
  stat = os.stat(os.path.join(folder, "model.safetensors"))
  os.utime(os.path.join(folder, "model.safetensors"), ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
  assert features_cache.directory(c) != first
