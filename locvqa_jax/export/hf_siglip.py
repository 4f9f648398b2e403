"""Hugging Face `SiglipVisionModel` <-> this project's ViT (big_vision parameter names).

Export writes a folder that `transformers.SiglipVisionModel.from_pretrained(folder)`
loads with no missing or unexpected keys; import reads such a folder (or the vision
tower of a two-tower `SiglipModel` folder) back into `vit.Model` fields and params.
Only numpy, safetensors and the JSON config are needed: torch is not imported.

Correspondence (HF names relative to the `SiglipVisionModel`):

  embedding/kernel [p, p, C, D]            embeddings.patch_embedding.weight [D, C, p, p]
  pos_embedding [1, N, D] (or sincos2d)    embeddings.position_embedding.weight [N, D]
  Transformer/encoderblock_{i}/
    LayerNorm_0, LayerNorm_1               encoder.layers.{i}.layer_norm1, layer_norm2
    MultiHeadDotProductAttention_0/
      query|key|value [D, H, d]            self_attn.q_proj|k_proj|v_proj [H*d, D]
      out [H, d, D]                        self_attn.out_proj [D, H*d]
    MlpBlock_0/Dense_0|Dense_1             mlp.fc1|fc2
  Transformer/encoder_norm                 post_layernorm
  MAPHead_0/probe                          head.probe
  MAPHead_0/MultiHeadDotProductAttention_0 head.attention.in_proj_* (q, k, v stacked),
                                           head.attention.out_proj
  MAPHead_0/LayerNorm_0, MlpBlock_0        head.layernorm, head.mlp.fc1|fc2

Outputs: HF `last_hidden_state` == our `out['encoded']` (after `encoder_norm`);
HF `pooler_output` == our MAP head output `out['pre_logits']` (pool_type='map'; None
in HF otherwise). Our MLP uses flax's `nn.gelu` (tanh approximation), which is HF's
`gelu_pytorch_tanh`; flax LayerNorm's epsilon is 1e-6.

Pre-processing is the project's: grayscale image letterboxed to the square
`image_size` (longest side resized, centred, zero padded), values in [-1, 1]
(x * 2 / 255 - 1), fed as a [B, C, H, W] float tensor with C the stem's channels
(1 for this project's encoders; HF's `num_channels` supports that directly).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Callable, Iterator, Mapping, Optional

import jax
import numpy as np

from locvqa_jax.models import npz
from locvqa_jax.models import vit

ACTIVATION = "gelu_pytorch_tanh"
# HF activations with exactly the tanh formula of flax's nn.gelu(approximate=True).
_TANH_GELUS = ("gelu_pytorch_tanh", "gelu_new")
LAYER_NORM_EPS = 1e-6
# Extra config.json entry that records what HF's config cannot say, so that import
# returns exactly the exported model (HF ignores unknown config entries).
META_KEY = "locvqa_jax_vit"
_UNSUPPORTED_PARAMS = ("cls", "pre_logits", "head")
_VISION_PREFIXES = ("", "vision_model.")

_Fn = Callable[[np.ndarray], np.ndarray]
# (our '/'-joined name, HF state-dict name, ours -> HF, HF -> ours)
_Rule = tuple[str, str, _Fn, _Fn]


def _linear_rules(ours: str, hf: str) -> list[_Rule]:
  """Dense kernel [in, out] <-> torch Linear weight [out, in]."""
  return [(f"{ours}/kernel", f"{hf}.weight", lambda a: a.T, lambda a: a.T),
          (f"{ours}/bias", f"{hf}.bias", lambda a: a, lambda a: a)]


def _norm_rules(ours: str, hf: str) -> list[_Rule]:
  same = lambda a: a
  return [(f"{ours}/scale", f"{hf}.weight", same, same),
          (f"{ours}/bias", f"{hf}.bias", same, same)]


def _attention_rules(ours: str, hf: str, heads: int) -> list[_Rule]:
  """Flax MHDPA [D, H, d] / [H, d, D] kernels <-> torch [H*d, D] / [D, H*d] weights."""
  rules = []
  for name, proj in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj")):
    rules += [
        (f"{ours}/{name}/kernel", f"{hf}.{proj}.weight",
         lambda a: a.reshape(a.shape[0], -1).T,
         lambda a, heads=heads: a.T.reshape(a.shape[1], heads, -1)),
        (f"{ours}/{name}/bias", f"{hf}.{proj}.bias",
         lambda a: a.reshape(-1), lambda a, heads=heads: a.reshape(heads, -1))]
  rules += [
      (f"{ours}/out/kernel", f"{hf}.out_proj.weight",
       lambda a: a.reshape(-1, a.shape[-1]).T,
       lambda a, heads=heads: a.T.reshape(heads, -1, a.shape[0])),
      (f"{ours}/out/bias", f"{hf}.out_proj.bias", lambda a: a, lambda a: a)]
  return rules


def _rules(depth: int, heads: int, map_head: bool) -> list[_Rule]:
  """Every tensor's rule except the MAP head's q/k/v, which HF stacks into one in_proj."""
  rules = [("embedding/kernel", "embeddings.patch_embedding.weight",
            lambda a: a.transpose(3, 2, 0, 1), lambda a: a.transpose(2, 3, 1, 0)),
           ("embedding/bias", "embeddings.patch_embedding.bias", lambda a: a, lambda a: a),
           ("pos_embedding", "embeddings.position_embedding.weight",
            lambda a: a[0], lambda a: a[None])]
  for i in range(depth):
    ours, hf = f"Transformer/encoderblock_{i}", f"encoder.layers.{i}"
    rules += _norm_rules(f"{ours}/LayerNorm_0", f"{hf}.layer_norm1")
    rules += _attention_rules(f"{ours}/MultiHeadDotProductAttention_0", f"{hf}.self_attn", heads)
    rules += _norm_rules(f"{ours}/LayerNorm_1", f"{hf}.layer_norm2")
    rules += _linear_rules(f"{ours}/MlpBlock_0/Dense_0", f"{hf}.mlp.fc1")
    rules += _linear_rules(f"{ours}/MlpBlock_0/Dense_1", f"{hf}.mlp.fc2")
  rules += _norm_rules("Transformer/encoder_norm", "post_layernorm")
  if map_head:
    attn = "MAPHead_0/MultiHeadDotProductAttention_0"
    rules.append(("MAPHead_0/probe", "head.probe", lambda a: a, lambda a: a))
    rules += [r for r in _attention_rules(attn, "head.attention", heads)
              if "/out/" in r[0]]
    rules += _norm_rules("MAPHead_0/LayerNorm_0", "head.layernorm")
    rules += _linear_rules("MAPHead_0/MlpBlock_0/Dense_0", "head.mlp.fc1")
    rules += _linear_rules("MAPHead_0/MlpBlock_0/Dense_1", "head.mlp.fc2")
  return rules


def _map_qkv_to_hf(flat: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """torch.nn.MultiheadAttention keeps q, k, v as one [3D, D] in_proj (order q, k, v)."""
  base = "MAPHead_0/MultiHeadDotProductAttention_0"
  names = ("query", "key", "value")
  weight = [flat[f"{base}/{n}/kernel"].reshape(flat[f"{base}/{n}/kernel"].shape[0], -1).T
            for n in names]
  bias = [flat[f"{base}/{n}/bias"].reshape(-1) for n in names]
  return {"head.attention.in_proj_weight": np.concatenate(weight, 0),
          "head.attention.in_proj_bias": np.concatenate(bias, 0)}


def _map_qkv_from_hf(state: Mapping[str, np.ndarray], heads: int) -> dict[str, np.ndarray]:
  base = "MAPHead_0/MultiHeadDotProductAttention_0"
  weight = np.split(state["head.attention.in_proj_weight"], 3, axis=0)
  bias = np.split(state["head.attention.in_proj_bias"], 3, axis=0)
  out = {}
  for name, w, b in zip(("query", "key", "value"), weight, bias):
    out[f"{base}/{name}/kernel"] = w.T.reshape(w.shape[1], heads, -1)
    out[f"{base}/{name}/bias"] = b.reshape(heads, -1)
  return out


def _architecture(vit_kwargs: Mapping[str, Any]) -> tuple[vit.Model, dict[str, Any]]:
  try:
    model = vit.Model(**dict(vit_kwargs))
  except TypeError as e:
    raise ValueError(f"encoder config is not a set of vit.Model fields: {e}") from None
  return model, model.resolved()


def vit_to_hf(vit_kwargs: Mapping[str, Any], params: Mapping[str, Any],
              image_size: Optional[int] = None,
              rgb: bool = False) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """Converts a ViT encoder into a SiglipVisionConfig dict and a SiglipVisionModel state dict.

  Args:
    vit_kwargs: vit.Model fields (variant or width/depth/..., posemb, pool_type, ...).
    params: the vit.Model params (scanned or unscanned layout; arrays of any backend).
    image_size: square input side in pixels. Inferred from a learned pos_embedding
      (a square grid times the patch size); required for posemb='sincos2d'.
    rgb: write a 3-channel stem for tools that only feed RGB: a 1-channel kernel is
      repeated over 3 channels and divided by 3, so a gray image repeated to 3
      identical channels gives the same tokens (up to float rounding).

  Returns:
    (config dict for `transformers.SiglipVisionConfig(**config)`, {HF name: float32
    numpy array}) with keys exactly those of `SiglipVisionModel.state_dict()`.

  Raises:
    ValueError for what a SiglipVisionModel cannot express: pool_type 'tok', a
    rep_size or classification head, non-square patches or grids.
  """
  model, arch = _architecture(vit_kwargs)
  flat = {k: np.asarray(jax.device_get(v), np.float32) for k, v in npz.flatten(params).items()}
  if any(k.startswith("Transformer/encoderblock/") for k in flat):
    flat = npz.flatten(vit.scan_to_loop(npz.unflatten(flat)))
  extra = sorted(k for k in flat if k.split("/")[0] in _UNSUPPORTED_PARAMS)
  if model.pool_type == "tok" or extra:
    raise ValueError(
        "SiglipVisionModel has no class token, pre-logits layer or classifier: "
        f"pool_type={model.pool_type!r}, params {extra}. Export the encoder without them.")
  if model.posemb not in ("learn", "sincos2d"):
    raise ValueError(f"Unknown posemb {model.posemb!r}: use 'learn' or 'sincos2d'.")
  patch_h, patch_w = arch["patch_size"]
  if patch_h != patch_w:
    raise ValueError(
        f"SiglipVisionModel needs square patches; got patch_size {(patch_h, patch_w)}.")
  width, heads = arch["width"], arch["num_heads"]
  if rgb and flat["embedding/kernel"].shape[2] == 1:
    flat["embedding/kernel"] = np.repeat(flat["embedding/kernel"], 3, axis=2) / 3
  image_size = _image_size(model.posemb, flat, patch_h, image_size)
  grid = image_size // patch_h
  if model.posemb == "sincos2d":
    flat["pos_embedding"] = np.asarray(vit.posemb_sincos_2d(grid, grid, width), np.float32)

  map_head = model.pool_type == "map"
  state = {}
  for ours, hf, to_hf, _ in _rules(arch["depth"], heads, map_head):
    if ours not in flat:
      raise ValueError(f"encoder params lack {ours!r} (needed for {hf!r}); have "
                       f"{sorted(flat)[:8]}...")
    state[hf] = to_hf(flat[ours])
  if map_head:
    state.update(_map_qkv_to_hf(flat))
  # safetensors' numpy writer stores the raw buffer: transposes must be made C-ordered.
  state = {k: np.ascontiguousarray(v) for k, v in state.items()}

  config = dict(
      architectures=["SiglipVisionModel"], model_type="siglip_vision_model",
      hidden_size=width, intermediate_size=arch["mlp_dim"] or 4 * width,
      num_hidden_layers=arch["depth"], num_attention_heads=heads,
      num_channels=int(flat["embedding/kernel"].shape[2]), image_size=image_size,
      patch_size=patch_h, hidden_act=ACTIVATION, layer_norm_eps=LAYER_NORM_EPS,
      attention_dropout=0.0, vision_use_head=map_head,
      **{META_KEY: dict(posemb=model.posemb, pool_type=model.pool_type)})
  return config, state


def _image_size(posemb: str, flat: Mapping[str, np.ndarray], patch: int,
                image_size: Optional[int]) -> int:
  if posemb == "learn":
    n = flat["pos_embedding"].shape[1]
    side = math.isqrt(n)
    if side * side != n:
      raise ValueError(f"pos_embedding has {n} positions, not a square grid; "
                       "SiglipVisionModel needs a square input.")
    if image_size is not None and image_size != side * patch:
      raise ValueError(f"image_size={image_size} disagrees with the learned pos_embedding "
                       f"({side}x{side} patches of {patch} px = {side * patch}).")
    return side * patch
  if image_size is None:
    raise ValueError("posemb='sincos2d' has no table to infer the input size from: pass "
                     "image_size (the training resolution, e.g. 224).")
  if image_size % patch:
    raise ValueError(f"image_size={image_size} is not a multiple of the patch size {patch}.")
  return image_size


def _strip_vision_prefix(state: Mapping[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
  """Vision tower tensors without 'vision_model.' ('' in transformers>=5 single-tower files)."""
  if any(k.startswith("vision_model.") for k in state):
    return {k[len("vision_model."):]: v for k, v in state.items()
            if k.startswith("vision_model.")}
  if any(k.startswith(("text_model.", "logit_")) for k in state):
    raise ValueError(f"{source}: a two-tower checkpoint without 'vision_model.' tensors.")
  return dict(state)


def config_to_vit_kwargs(config: Mapping[str, Any], source: str = "<HF model>") -> dict[str, Any]:
  """vit.Model fields of a SiglipVisionConfig (or SiglipConfig) dict; no tensors needed.

  Raises:
    ValueError (naming `source`) on an activation, epsilon or head this ViT cannot reproduce.
  """
  if "vision_config" in config:
    config = config["vision_config"] or {}
  act = config.get("hidden_act", ACTIVATION)
  if act not in _TANH_GELUS:
    raise ValueError(f"{source}: hidden_act={act!r}; this ViT's MLP uses the tanh GELU "
                     f"({' or '.join(_TANH_GELUS)}).")
  eps = config.get("layer_norm_eps", LAYER_NORM_EPS)
  if not math.isclose(eps, LAYER_NORM_EPS):
    raise ValueError(f"{source}: layer_norm_eps={eps}; this ViT's LayerNorm uses {LAYER_NORM_EPS}.")
  width, heads = config.get("hidden_size", 768), config.get("num_attention_heads", 12)
  depth, patch = config.get("num_hidden_layers", 12), config.get("patch_size", 16)
  map_head = bool(config.get("vision_use_head", True))
  meta = dict(config.get(META_KEY) or {})
  posemb = meta.get("posemb", "learn")
  pool_type = meta.get("pool_type", "map" if map_head else "none")
  if (pool_type == "map") != map_head:
    raise ValueError(f"{source}: {META_KEY}.pool_type={pool_type!r} but vision_use_head="
                     f"{map_head}.")
  vit_kwargs = dict(width=width, depth=depth, mlp_dim=config.get("intermediate_size", 3072),
                    num_heads=heads, patch_size=(patch, patch), posemb=posemb,
                    pool_type=pool_type, channels=config.get("num_channels", 3))
  return vit_kwargs


def hf_to_vit(config: Mapping[str, Any], state: Mapping[str, np.ndarray],
              source: str = "<HF model>") -> tuple[dict[str, Any], dict[str, Any]]:
  """Inverse of `vit_to_hf`: (vision config dict, state dict) -> (vit kwargs, params).

  Args:
    config: a SiglipVisionConfig dict, or a SiglipConfig dict (its 'vision_config' is
      used and the state's 'vision_model.' tensors are taken).
    state: {HF name: numpy array}, names with or without the 'vision_model.' prefix.
    source: named in error messages (e.g. the folder).

  Returns:
    (vit.Model kwargs, nested params dict of float32 numpy arrays). A model exported by
    `vit_to_hf` comes back with its posemb/pool_type; a sincos2d table is checked and
    dropped. Other SigLIP models give posemb='learn' and pool_type 'map' (with head) or
    'none'.

  Raises:
    ValueError on activations, epsilons or tensors this ViT cannot reproduce.
  """
  vit_kwargs = config_to_vit_kwargs(config, source)
  depth, heads = vit_kwargs["depth"], vit_kwargs["num_heads"]
  posemb, map_head = vit_kwargs["posemb"], vit_kwargs["pool_type"] == "map"
  width = vit_kwargs["width"]

  state = {k: np.asarray(v, np.float32) for k, v in _strip_vision_prefix(state, source).items()}
  rules = _rules(depth, heads, map_head)
  expected = {hf for _, hf, _, _ in rules}
  if map_head:
    expected |= {"head.attention.in_proj_weight", "head.attention.in_proj_bias"}
  missing = sorted(expected - set(state))
  unexpected = sorted(set(state) - expected - {"embeddings.position_ids"})
  if missing or unexpected:
    raise ValueError(f"{source}: tensors do not match a SigLIP vision tower of depth {depth}"
                     f"{' with head' if map_head else ''}: missing {missing}, unexpected "
                     f"{unexpected}.")
  flat = {ours: from_hf(state[hf]) for ours, hf, _, from_hf in rules}
  if map_head:
    flat.update(_map_qkv_from_hf(state, heads))
  if posemb == "sincos2d":
    table = flat.pop("pos_embedding")
    side = math.isqrt(table.shape[1])
    want = np.asarray(vit.posemb_sincos_2d(side, side, width), np.float32)
    if table.shape != want.shape or not np.allclose(table, want, atol=1e-6):
      raise ValueError(f"{source}: {META_KEY}.posemb='sincos2d' but the position table is not "
                       "the sincos2d table; drop that entry to import it as a learned table.")
  return vit_kwargs, npz.unflatten(flat)


def save(out_dir: str, vit_kwargs: Mapping[str, Any], params: Mapping[str, Any],
         image_size: Optional[int] = None, rgb: bool = False) -> dict[str, Any]:
  """Writes `config.json` and `model.safetensors` of a SiglipVisionModel; returns the config.

  Arguments as `vit_to_hf`; `out_dir` is created if needed.
  """
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  config, state = vit_to_hf(vit_kwargs, params, image_size, rgb)
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "config.json"), "w") as f:
    json.dump(config, f, indent=2, sort_keys=True)
    f.write("\n")
  # transformers reads the 'format' metadata to know the tensors are torch-layout.
  save_file(state, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
  return config


def _safetensors_files(path: str) -> Iterator[str]:
  index = os.path.join(path, "model.safetensors.index.json")
  if os.path.exists(index):
    with open(index) as f:
      yield from (os.path.join(path, name)
                  for name in sorted(set(json.load(f)["weight_map"].values())))
  elif os.path.exists(os.path.join(path, "model.safetensors")):
    yield os.path.join(path, "model.safetensors")
  else:
    raise FileNotFoundError(f"{path}: no model.safetensors (nor model.safetensors.index.json); "
                            "only safetensors folders are read.")


def read_config(path: str) -> dict[str, Any]:
  """The config.json dict of a local SigLIP folder; raises naming the folder or file."""
  config_path = os.path.join(path, "config.json")
  if not os.path.exists(config_path):
    raise FileNotFoundError(f"{path}: no config.json; expected a Hugging Face SigLIP folder.")
  with open(config_path) as f:
    config = json.load(f)
  model_type = config.get("model_type", "")
  if model_type not in ("siglip", "siglip_vision_model"):
    raise ValueError(f"{config_path}: model_type={model_type!r}; expected 'siglip_vision_model' "
                     "(SiglipVisionModel) or 'siglip' (SiglipModel).")
  return config


def read_folder(path: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """(config.json dict, all tensors as numpy) of a local Hugging Face model folder."""
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  config = read_config(path)
  state = {}
  for file in _safetensors_files(path):
    state.update(load_file(file))
  return config, state


def load_hf_encoder(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
  """A local SigLIP folder (vision or two-tower) -> (vit.Model kwargs, params)."""
  config, state = read_folder(path)
  return hf_to_vit(config, state, source=path)
