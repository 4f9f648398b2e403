"""HF SigLIP export/import: strict loading, numerical match with the JAX ViT, exact round trip."""

import json
import os

import jax
import numpy as np
import pytest

from locvqa_jax.export import hf_siglip
from locvqa_jax.models import npz
from locvqa_jax.models import vit

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# (vit.Model kwargs, image side, channels): micro /16 gray with a learned table; a
# 4-head /8 with a MAP head and sincos2d; a scanned RGB /4 with a MAP head.
VARIANTS = {
    "micro16_learn_gray": (dict(variant="micro", pool_type="none", posemb="learn"), 32, 1),
    "w64_map_sincos_gray": (dict(variant="w64-d2-m128-h4/8", pool_type="map",
                                 posemb="sincos2d"), 32, 1),
    "w32_map_learn_rgb_scan": (dict(variant="w32-d3-m64-h2/4", pool_type="map", posemb="learn",
                                    scan=True), 16, 3),
}


def random_params(model, image, seed=0):
  """Random params of the model's shapes (no init compile): N(0, 0.1), norm scales near 1."""
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), image)["params"]
  rng = np.random.RandomState(seed)
  flat = {k: np.float32(0.1) * rng.standard_normal(v.shape).astype(np.float32)
          + np.float32(k.endswith("/scale")) for k, v in npz.flatten(shapes).items()}
  return npz.unflatten(flat)


def _build(name):
  kwargs, side, channels = VARIANTS[name]
  model = vit.Model(**kwargs)
  image = np.random.RandomState(1).uniform(-1, 1, (3, side, side, channels)).astype(np.float32)
  return kwargs, model, random_params(model, image), image, side


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def exported(request, tmp_path_factory):
  kwargs, model, params, image, side = _build(request.param)
  out_dir = str(tmp_path_factory.mktemp(request.param))
  image_size = side if kwargs["posemb"] == "sincos2d" else None
  config = hf_siglip.save(out_dir, kwargs, params, image_size=image_size)
  return dict(kwargs=kwargs, model=model, params=params, image=image, dir=out_dir,
              config=config)


def test_loads_strictly_with_config(exported):
  hf_model, info = transformers.SiglipVisionModel.from_pretrained(
      exported["dir"], output_loading_info=True)
  assert not info["missing_keys"] and not info["unexpected_keys"]
  assert not info["mismatched_keys"] and not info["error_msgs"]
  cfg = hf_model.config
  assert cfg.hidden_act == "gelu_pytorch_tanh" and cfg.layer_norm_eps == 1e-6
  assert cfg.vision_use_head == (exported["kwargs"]["pool_type"] == "map")
  assert cfg.num_channels == exported["image"].shape[-1]
  assert cfg.image_size == exported["image"].shape[1]


def test_outputs_match(exported):
  hf_model = transformers.SiglipVisionModel.from_pretrained(exported["dir"]).eval()
  _, out = jax.jit(exported["model"].apply)({"params": exported["params"]}, exported["image"])
  pixels = torch.from_numpy(np.asarray(exported["image"]).transpose(0, 3, 1, 2).copy())
  with torch.no_grad():
    hf_out = hf_model(pixel_values=pixels)
  tokens = hf_out.last_hidden_state.numpy()
  assert tokens.shape == out["encoded"].shape
  np.testing.assert_allclose(tokens, np.asarray(out["encoded"]), atol=2e-5, rtol=0)
  if exported["kwargs"]["pool_type"] == "map":
    np.testing.assert_allclose(hf_out.pooler_output.numpy(), np.asarray(out["pre_logits"]),
                               atol=2e-5, rtol=0)
  else:
    assert hf_out.pooler_output is None


def test_import_is_exact_inverse(exported):
  kwargs, params = hf_siglip.load_hf_encoder(exported["dir"])
  want = exported["params"]
  if exported["kwargs"].get("scan"):
    want = vit.scan_to_loop(want)
  want_flat = npz.flatten(jax.device_get(want))
  got_flat = npz.flatten(params)
  assert sorted(got_flat) == sorted(want_flat)
  for key, value in want_flat.items():
    np.testing.assert_array_equal(got_flat[key], value, err_msg=key)
  assert kwargs["posemb"] == exported["kwargs"]["posemb"]
  assert kwargs["pool_type"] == exported["kwargs"]["pool_type"]
  model = vit.Model(**kwargs)
  resolved = vit.Model(**exported["kwargs"]).resolved()
  assert model.resolved() == resolved


def test_rgb_stem_gives_the_same_tokens_on_repeated_gray(tmp_path):
  kwargs, model, params, image, _ = _build("micro16_learn_gray")
  config = hf_siglip.save(str(tmp_path), kwargs, params, rgb=True)
  assert config["num_channels"] == 3
  hf_model = transformers.SiglipVisionModel.from_pretrained(str(tmp_path)).eval()
  _, out = jax.jit(model.apply)({"params": params}, image)
  rgb = np.repeat(image.transpose(0, 3, 1, 2), 3, axis=1)
  with torch.no_grad():
    tokens = hf_model(pixel_values=torch.from_numpy(rgb)).last_hidden_state.numpy()
  np.testing.assert_allclose(tokens, np.asarray(out["encoded"]), atol=2e-5, rtol=0)
  # Back into the 1-channel model: the RGB stem is summed over channels.
  from locvqa_jax.models import init_from  # pylint: disable=g-import-not-at-top
  loaded = init_from.load_encoder_weights(str(tmp_path), params)
  np.testing.assert_allclose(loaded["embedding"]["kernel"], params["embedding"]["kernel"],
                             atol=1e-7, rtol=0)


def test_import_two_tower_folder(tmp_path):
  vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, image_size=16, patch_size=8, num_channels=3)
  text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
              num_attention_heads=2, vocab_size=50, max_position_embeddings=8)
  config = transformers.SiglipConfig(text_config=text, vision_config=vision)
  torch.manual_seed(0)
  two_tower = transformers.SiglipModel(config).eval()
  two_tower.save_pretrained(str(tmp_path))
  kwargs, params = hf_siglip.load_hf_encoder(str(tmp_path))
  assert kwargs["pool_type"] == "map" and kwargs["channels"] == 3
  model = vit.Model(**kwargs)
  image = np.random.RandomState(0).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
  _, out = model.apply({"params": params}, image)
  with torch.no_grad():
    ref = two_tower.vision_model(pixel_values=torch.from_numpy(image.transpose(0, 3, 1, 2)))
  np.testing.assert_allclose(np.asarray(out["encoded"]), ref.last_hidden_state.numpy(),
                             atol=2e-5, rtol=0)
  np.testing.assert_allclose(np.asarray(out["pre_logits"]), ref.pooler_output.numpy(),
                             atol=2e-5, rtol=0)


def test_unsupported_models_fail_loudly(tmp_path):
  kwargs, _, params, _, _ = _build("micro16_learn_gray")
  with pytest.raises(ValueError, match="pool_type='tok'"):
    hf_siglip.vit_to_hf({**kwargs, "pool_type": "tok"}, params)
  with pytest.raises(ValueError, match="head/kernel"):
    hf_siglip.vit_to_hf(kwargs, {**params, "head": {"kernel": np.zeros((64, 2))}})
  with pytest.raises(ValueError, match="pass image_size"):
    hf_siglip.vit_to_hf({**kwargs, "posemb": "sincos2d"}, params)
  config, state = hf_siglip.vit_to_hf(kwargs, params)
  with pytest.raises(ValueError, match="hidden_act='gelu'"):
    hf_siglip.hf_to_vit({**config, "hidden_act": "gelu"}, state)
  del state["post_layernorm.bias"]
  state["extra.weight"] = np.zeros(3)
  with pytest.raises(ValueError, match=r"missing \['post_layernorm.bias'\], unexpected "
                     r"\['extra.weight'\]"):
    hf_siglip.hf_to_vit(config, state, source="dir")


def test_config_json_is_plain_siglip(exported):
  with open(f"{exported['dir']}/config.json") as f:
    config = json.load(f)
  assert config["model_type"] == "siglip_vision_model"
  assert config["architectures"] == ["SiglipVisionModel"]
  assert config[hf_siglip.META_KEY]["posemb"] == exported["kwargs"]["posemb"]


def test_docs_pytorch_example(tmp_path):
  """docs/export.md's example letterboxes like the pipeline and reproduces the JAX tokens."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from locvqa_jax.data import letterbox  # pylint: disable=g-import-not-at-top
  kwargs, model, params, _, _ = _build("micro16_learn_gray")
  hf_siglip.save(str(tmp_path / "hf"), kwargs, params)
  gray = (np.random.RandomState(3).rand(45, 26) * 255).astype(np.uint8)
  Image.fromarray(gray).save(tmp_path / "cxr.png")
  doc = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "export.md")
  with open(doc) as f:
    example = f.read().split("```python\n")[1].split("```")[0]
  example = example.replace('"W/export/hf"', repr(str(tmp_path / "hf")))
  example = example.replace('"cxr.png"', repr(str(tmp_path / "cxr.png")))
  scope = {}
  exec(example, scope)  # pylint: disable=exec-used
  np.testing.assert_array_equal(np.asarray(scope["canvas"]), letterbox.letterbox(gray, 32))
  image = np.asarray(letterbox.letterbox(gray, 32), np.float32) * (2 / 255) - 1
  np.testing.assert_array_equal(scope["x"].numpy()[0, 0], image)
  _, out = model.apply({"params": params}, image[None, :, :, None])
  np.testing.assert_allclose(scope["tokens"].numpy(), np.asarray(out["encoded"]), atol=2e-5,
                             rtol=0)
