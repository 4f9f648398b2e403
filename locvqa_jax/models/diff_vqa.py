"""Difference-VQA model: a shared ViT over two images and a decoder-only language model.

Layout (PaliGemma): the language model reads

    [reference image tokens][main image tokens][bos question]   bidirectional prefix
    [answer eos]                                                causal, in the loss

The encoder (params['encoder'], `vit.Model`, big_vision names) runs once per image with
shared weights; it is frozen by default (`freeze_encoder`: its output passes through
stop_gradient; the config also freezes its parameters in the optimizer). With
`normalize_image`, each encoder token is first standardised per position and channel with
training-set statistics (params['image_norm'], `ImageNorm`). A learned temporal
embedding (params['temporal_embedding'] [2, D_enc]; row 0 = reference, row 1 = main) is added
to every token of each image, then a shared two-layer GELU projector (params['projector'])
maps them to the language model's width. Image tokens carry no text position: the ViT's own
position embedding and the temporal row already place them (with `image_positions`, a learned
row per token position, shared by both images, is added too), and text positions start at 0 at
bos, so the language model's `max_len` only bounds the text. With `difference_tokens` the first
block is main minus reference instead of the reference (after `ImageNorm`). `image_pool`
averages both blocks over windows of the patch grid, `main_pool` only the main image's block.

The language model (params['lm']) uses the CapPa decoder's names where a counterpart exists,
so `lm_params_from_cappa` can start it from a pretraining decoder:

  EmbedTargets/embedding [V, E]        pos_embedding [1, max_len, E]
  Block{i}/{LayerNorm1, SelfAttn/{query,key,value,out}, LayerNorm2, MLP/{Dense_0,Dense_1}}
  LayerNorm   LogitsDense

Inputs: `images` is [B, 2, R, R, C] pixels in [-1, 1] (index 0 reference, 1 main) or, when
the encoder's outputs were cached (locvqa_jax/features_cache.py), [B, 2, N, D_enc] encoder
tokens; the trainer's `captioning` loss then drives this model unchanged. With `blind=True`
the image tokens are removed altogether (the blind baseline: same language model and budget).
"""

from __future__ import annotations

import copy
import math
import re
from typing import Any, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from locvqa_jax.models import cappa
from locvqa_jax.models import common
from locvqa_jax.models import npz
from locvqa_jax.models import vit

# `micro` is the CPU smoke size and `small` the next step up on CPU; `gpt2_medium` is the
# authors' language-model shape (24 x 1024, 16 heads); `gpt2` the small GPT-2 (12 x 768).
LM_PRESETS: dict[str, dict[str, Any]] = {
    "micro": dict(num_layers=2, emb_dim=64, mlp_dim=128, num_heads=2),
    "small": dict(num_layers=4, emb_dim=128, mlp_dim=512, num_heads=4),
    "gpt2": dict(num_layers=12, emb_dim=768, mlp_dim=3072, num_heads=12),
    "gpt2_medium": dict(num_layers=24, emb_dim=1024, mlp_dim=4096, num_heads=16),
}


class LmBlock(nn.Module):
  """Pre-LN decoder-only block: x + SelfAttn(LN1 x), then + MLP(LN2 x)."""
  emb_dim: int
  mlp_dim: int
  num_heads: int
  dropout: float = 0.0
  use_bias: bool = True
  dtype_mm: str = "float32"

  @nn.compact
  def __call__(self, x: jax.Array, self_mask: jax.Array, deterministic: bool = True,
               cache: Optional[dict] = None, write_pos: Optional[jax.Array] = None):
    """x [B, T, E], self_mask [B, T, S]; cache 'k', 'v' [B, S, H, Dh] written at write_pos [B]."""
    drop = lambda y: nn.Dropout(rate=self.dropout)(y, deterministic)
    attn = common.Attention(self.emb_dim, self.num_heads, dtype_mm=self.dtype_mm,
                            name="SelfAttn")
    h = nn.LayerNorm(name="LayerNorm1", use_bias=self.use_bias)(x)
    y, new_cache = common.cached_self_attention(attn, h, self_mask, cache, write_pos)
    x = x + drop(y)
    h = nn.LayerNorm(name="LayerNorm2", use_bias=self.use_bias)(x)
    x = x + drop(common.MlpBlock(self.mlp_dim, self.dropout, self.use_bias, self.dtype_mm,
                                 name="MLP")(h, deterministic))
    return x, new_cache


class LanguageModel(nn.Module):
  """Decoder-only transformer over [prefix embeddings][text tokens]."""
  vocab_size: int
  num_layers: int = 2
  emb_dim: int = 64
  mlp_dim: Optional[int] = None
  num_heads: int = 2
  dropout: float = 0.0
  max_len: int = 256
  use_bias: bool = True
  remat_policy: str = "none"
  dtype_mm: str = "float32"

  @nn.compact
  def __call__(self, tokens: jax.Array, positions: jax.Array, prefix: Optional[jax.Array],
               self_mask: jax.Array, *, cache: Optional[list] = None,
               write_pos: Optional[jax.Array] = None, deterministic: bool = True):
    """Runs the language model.

    Args:
      tokens: [B, T] text ids.
      positions: [B, T] text positions (index into pos_embedding).
      prefix: [B, M, E] embeddings placed before the text (image tokens), or None.
      self_mask: [B, M + T, S] bool; S = M + T without a cache, the cache length with one.
      cache: None or one dict per layer of 'k', 'v' [B, S, H, Dh]; the M + T new entries are
        written from `write_pos` [B].
      deterministic: disables dropout.

    Returns:
      (logits [B, T, vocab_size] float32 for the text positions, new cache or None).
    """
    x = nn.Embed(self.vocab_size, self.emb_dim, name="EmbedTargets",
                 embedding_init=nn.initializers.normal(stddev=1.0))(tokens)
    pe = self.param("pos_embedding", nn.initializers.normal(stddev=1 / math.sqrt(self.emb_dim)),
                    (1, self.max_len, self.emb_dim), jnp.float32)
    x = x + jnp.take(pe[0], positions, axis=0)
    num_prefix = 0
    if prefix is not None:
      num_prefix = prefix.shape[1]
      x = jnp.concatenate([prefix.astype(x.dtype), x], axis=1)
    block_cls = LmBlock
    if self.remat_policy != "none":
      block_cls = nn.remat(block_cls, static_argnums=(3,),
                           policy=getattr(jax.checkpoint_policies, self.remat_policy))
    new_cache = [] if cache is not None else None
    for i in range(self.num_layers):
      block = block_cls(emb_dim=self.emb_dim, mlp_dim=self.mlp_dim or 4 * self.emb_dim,
                        num_heads=self.num_heads, dropout=self.dropout,
                        use_bias=self.use_bias, dtype_mm=self.dtype_mm, name=f"Block{i}")
      x, layer_cache = block(x, self_mask, deterministic,
                             None if cache is None else cache[i], write_pos)
      if cache is not None:
        new_cache.append(layer_cache)
    x = nn.LayerNorm(name="LayerNorm", use_bias=self.use_bias)(x[:, num_prefix:])
    logits = nn.Dense(self.vocab_size, kernel_init=nn.initializers.zeros, dtype=self.dtype_mm,
                      name="LogitsDense")(x)
    return logits.astype(jnp.float32), new_cache


class Projector(nn.Module):
  """Dense(E) -> GELU -> Dense(E): encoder width to the language model's width."""
  emb_dim: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.Dense(self.emb_dim, kernel_init=nn.initializers.xavier_uniform())(x)
    return nn.Dense(self.emb_dim, kernel_init=nn.initializers.xavier_uniform())(nn.gelu(x))


class ImageNorm(nn.Module):
  """Standardises encoder tokens [..., N, D] per token position and channel.

  params 'mean' and 'inv_std' [N, D] start as the identity (0 and 1) and are set once on a fresh
  start from the training images (locvqa_jax/image_stats.py, through `load_pretrained`); they
  are constants of the model, never trained (stop_gradient), and travel with the checkpoint.
  """

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    mean = self.param("mean", nn.initializers.zeros, x.shape[-2:], jnp.float32)
    inv_std = self.param("inv_std", nn.initializers.ones, x.shape[-2:], jnp.float32)
    mean, inv_std = jax.lax.stop_gradient(mean), jax.lax.stop_gradient(inv_std)
    return (x - mean.astype(x.dtype)) * inv_std.astype(x.dtype)


class ImagePositions(nn.Module):
  """Adds a learned embedding per image-token position [N, D], shared by both images.

  The encoder's own position embedding is constant across images, so `ImageNorm` removes most of
  it; this row tells the language model which token of the reference lies under which token of
  the main image.
  """
  stddev: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    pos = self.param("embedding", nn.initializers.normal(stddev=self.stddev), x.shape[-2:],
                     jnp.float32)
    return x + pos.astype(x.dtype)


class DiffVqa(nn.Module):
  """Two images + question -> answer. Build it with `Model(...)`; see the module docstring.

  encoder_kw / lm_kw are (key, value) tuples (hashable) of vit.Model and LanguageModel fields.
  """
  encoder_kw: tuple
  lm_kw: tuple
  freeze_encoder: bool = True
  blind: bool = False
  normalize_image: bool = False
  image_positions: bool = False
  difference_tokens: bool = False
  image_pool: int = 1
  main_pool: int = 1

  def setup(self):
    self.encoder = vit.Model(**dict(self.encoder_kw))
    self.lm = LanguageModel(**dict(self.lm_kw))
    if not self.blind:
      width = vit.Model(**dict(self.encoder_kw)).resolved()["width"]
      # On the scale of the tokens it marks: standardised tokens have unit variance per channel,
      # and a small row would leave reference and main nearly indistinguishable at the start.
      std = 1.0 if self.normalize_image else 0.02
      self.temporal_embedding = self.param("temporal_embedding",
                                           nn.initializers.normal(stddev=std), (2, width))
      self.projector = Projector(self.lm.emb_dim)
      if self.normalize_image:
        self.image_norm = ImageNorm()
      if self.image_positions:
        self.image_pos = ImagePositions(stddev=std)

  def encode(self, images: jax.Array, train: bool = False) -> jax.Array:
    """images [B, 2, R, R, C] in [-1, 1] -> encoder tokens [B, 2, N, D_enc] (one ViT pass each)."""
    b, two = images.shape[:2]
    _, out = self.encoder(images.reshape((b * two,) + images.shape[2:]),
                          train=train and not self.freeze_encoder)
    encoded = out["encoded"]
    if self.freeze_encoder:
      encoded = jax.lax.stop_gradient(encoded)
    return encoded.reshape((b, two) + encoded.shape[1:])

  def features(self, images: jax.Array, train: bool = False) -> jax.Array:
    """Pixels [B, 2, R, R, C] or cached encoder tokens [B, 2, N, D] -> [B, 2, N, D]."""
    if images.ndim == 5:
      return self.encode(images, train)
    if images.ndim != 4 or images.shape[1] != 2:
      raise ValueError(f"diff_vqa expects images [B, 2, R, R, C] or cached features "
                       f"[B, 2, N, D], got shape {images.shape}")
    if self.is_initializing():
      # Cached features skip the encoder, but its parameters still belong in the model so
      # that evaluation and the answer command can read pixels: trace it on a blank pair
      # whose patch grid gives the cached number of tokens.
      side = int(round(math.sqrt(images.shape[2])))
      patch = self.encoder.resolved()["patch_size"][0]
      channels = self.encoder.channels or 1
      self.encode(jnp.zeros((1, 2, side * patch, side * patch, channels)))
    return jax.lax.stop_gradient(images) if self.freeze_encoder else images

  def image_tokens(self, images: jax.Array, train: bool = False) -> Optional[jax.Array]:
    """[B, M, E] projected image tokens (reference or main - reference, then main), or None.

    M = 2N for N tokens per image (after `image_pool`), N + N / main_pool**2 with `main_pool`.
    """
    if self.blind:
      return None
    feats = self.features(images, train)
    if self.normalize_image:
      feats = self.image_norm(feats)
    if self.image_pool > 1:
      feats = pool_tokens(feats, self.image_pool)
    if self.difference_tokens:
      feats = jnp.concatenate([feats[:, 1:] - feats[:, :1], feats[:, 1:]], axis=1)
    if self.image_positions:
      feats = self.image_pos(feats)
    feats = feats + self.temporal_embedding[None, :, None, :].astype(feats.dtype)
    if self.main_pool > 1:  # The first block stays; the main image's block is averaged.
      main = pool_tokens(feats[:, 1:], self.main_pool, field="main_pool")[:, 0]
      tokens = jnp.concatenate([feats[:, 0], main], axis=1)
    else:
      tokens = feats.reshape((feats.shape[0], -1, feats.shape[-1]))
    return self.projector(tokens)

  def decode(self, images: jax.Array, text: jax.Array, mask_ar: jax.Array, *,
             mask_tokens: Optional[jax.Array] = None, train: bool = False) -> jax.Array:
    """Uncached pass: images (pixels or features), text/mask_ar [B, L] -> logits [B, L, V]."""
    b, length = text.shape
    self._check_len(length)
    prefix = self.image_tokens(images, train)
    m = 0 if prefix is None else prefix.shape[1]
    full_ar = jnp.concatenate([jnp.zeros((b, m), jnp.int32), mask_ar.astype(jnp.int32)], 1)
    full_tokens = None
    if mask_tokens is not None:
      full_tokens = jnp.concatenate([jnp.ones((b, m), jnp.int32),
                                     mask_tokens.astype(jnp.int32)], 1)
    positions = jnp.broadcast_to(jnp.arange(length), (b, length))
    logits, _ = self.lm(text, positions, prefix, cappa.prefix_lm_mask(full_ar, full_tokens),
                        deterministic=not train)
    return logits

  def __call__(self, images: jax.Array, text: jax.Array, mask_ar: jax.Array, *,
               train: bool = False, mask_tokens: Optional[jax.Array] = None):
    """(logits [B, L, V], out); logits[:, i] predicts the token after text[:, i]."""
    logits = self.decode(images, text, mask_ar, mask_tokens=mask_tokens, train=train)
    return logits, {"logits": logits}

  def _check_len(self, length: int):
    if length > self.lm.max_len:
      raise ValueError(f"text length {length} exceeds model.lm.max_len {self.lm.max_len}; "
                       "raise model.lm.max_len or shorten the question / max_decode_len")

  def prefill(self, images: jax.Array, prefix: jax.Array, prefix_len: jax.Array,
              cache_len: int):
    """Runs images + bos/question through the LM and fills the KV cache.

    Args:
      images: [B, 2, R, R, C] pixels or [B, 2, N, D] cached features.
      prefix: [B, P] ids: bos + question, right-padded.
      prefix_len: [B] int real prefix tokens (>= 1).
      cache_len: text cache length (P + tokens to generate); the cache adds the image tokens.

    Returns:
      (logits [B, V] at each row's last prefix token, cache). The cache is a dict with
      'layers' (per layer 'k', 'v' [B, M + cache_len, H, Dh]) and 'offset' [B] (= M, the
      number of image tokens), so every leaf keeps the batch on axis 0.
    """
    b, p = prefix.shape
    self._check_len(cache_len)
    img = self.image_tokens(images)
    m = 0 if img is None else img.shape[1]
    total = m + cache_len
    keys_valid = jnp.arange(total)[None, :] < (m + prefix_len)[:, None]
    self_mask = jnp.broadcast_to(keys_valid[:, None, :], (b, m + p, total))
    head_dim = self.lm.emb_dim // self.lm.num_heads
    shape = (b, total, self.lm.num_heads, head_dim)
    empty = [dict(k=jnp.zeros(shape, jnp.float32), v=jnp.zeros(shape, jnp.float32))
             for _ in range(self.lm.num_layers)]
    positions = jnp.broadcast_to(jnp.arange(p), (b, p))
    logits, layers = self.lm(prefix, positions, img, self_mask, cache=empty,
                             write_pos=jnp.zeros((b,), jnp.int32))
    last = jnp.take_along_axis(logits, (prefix_len - 1)[:, None, None], axis=1)[:, 0]
    return last, {"layers": layers, "offset": jnp.full((b,), m, jnp.int32)}

  def decode_step(self, token: jax.Array, pos: jax.Array, cache: dict):
    """token [B] at text position pos [B] -> (logits [B, V], cache)."""
    layers, offset = cache["layers"], cache["offset"]
    total = layers[0]["k"].shape[1]
    where = offset + pos
    self_mask = (jnp.arange(total)[None, :] <= where[:, None])[:, None, :]
    logits, layers = self.lm(token[:, None], pos[:, None], None, self_mask, cache=layers,
                             write_pos=where)
    return logits[:, 0], {"layers": layers, "offset": offset}


def pool_tokens(feats: jax.Array, window: int, field: str = "image_pool") -> jax.Array:
  """[B, K, N, D] tokens of a square patch grid -> [B, K, N / window**2, D] window means.

  `field` names the config field in the error for a grid that the window does not divide.
  """
  b, k, n, d = feats.shape
  side = int(round(math.sqrt(n)))
  if side * side != n or side % window:
    raise ValueError(f"model.{field}={window}: the {n} image tokens are not a square grid "
                     f"whose side is a multiple of {window}")
  grid = feats.reshape(b, k, side // window, window, side // window, window, d)
  return grid.mean(axis=(3, 5)).reshape(b, k, -1, d)


def Model(*, encoder: Optional[Mapping[str, Any]] = None,  # pylint: disable=invalid-name
          lm: Optional[Mapping[str, Any]] = None, lm_preset: Optional[str] = None,
          freeze_encoder: bool = True, blind: bool = False,
          normalize_image: bool = False, image_positions: bool = False,
          difference_tokens: bool = False, image_pool: int = 1,
          main_pool: int = 1) -> DiffVqa:
  """Builds the difference-VQA model.

  Args:
    encoder: vit.Model fields (variant, pool_type='none', posemb, channels, scan, ...).
    lm: LanguageModel fields; `vocab_size` is required (the tokenizer's size).
    lm_preset: a name in LM_PRESETS; `lm` entries override it.
    freeze_encoder: stop gradients into the encoder (the default, as the paper).
    blind: drop the image tokens (the blind baseline).
    normalize_image: standardise each encoder token with training-set statistics (`ImageNorm`,
      set by `load_pretrained`) before the temporal embedding and projector.
    image_positions: add a learned embedding per image-token position, shared by both images
      (`ImagePositions`, params['image_pos']).
    difference_tokens: the first block carries main minus reference per token position (after
      `ImageNorm`) instead of the reference: the same information, with the change explicit.
    image_pool: average the image tokens over image_pool x image_pool windows of the patch
      grid (after `ImageNorm`), so the language model reads image_pool**2 times fewer tokens.
    main_pool: average only the main image's block over main_pool x main_pool windows (after
      the position and temporal embeddings), keeping the first block whole: with
      `difference_tokens` the change stays at full resolution and the main image, which answers
      the other question types, costs main_pool**2 times fewer tokens.
  """
  if lm_preset is not None and lm_preset not in LM_PRESETS:
    raise ValueError(f"Unknown model.lm_preset {lm_preset!r}; known: {sorted(LM_PRESETS)}")
  enc = dict(encoder or {})
  if enc.get("pool_type", "none") != "none":
    raise ValueError(f"model.encoder.pool_type={enc['pool_type']!r}: the language model reads "
                     "every image token, use 'none'")
  enc["pool_type"] = "none"
  lm_kw = {**copy.deepcopy(LM_PRESETS.get(lm_preset, {})), **dict(lm or {})}
  cappa.check_keys("encoder", enc, vit.Model)
  cappa.check_keys("lm", lm_kw, LanguageModel)
  if "vocab_size" not in lm_kw or lm_kw["vocab_size"] is None:
    raise ValueError("diff_vqa.Model needs lm.vocab_size (the tokenizer's vocab_size).")
  return DiffVqa(encoder_kw=cappa._freeze(enc), lm_kw=cappa._freeze(lm_kw),  # pylint: disable=protected-access
                 freeze_encoder=bool(freeze_encoder), blind=bool(blind),
                 normalize_image=bool(normalize_image), image_positions=bool(image_positions),
                 difference_tokens=bool(difference_tokens),
                 image_pool=int(image_pool), main_pool=int(main_pool))


# ----------------------------------------------------------------- init from the pretraining decoder

_CAPPA_TO_LM = (
    (r"EmbedTargets/embedding", r"EmbedTargets/embedding"),
    (r"pos_embedding", r"pos_embedding"),
    (r"EncDecBlock(\d+)/LayerNorm1/(.*)", r"Block\1/LayerNorm1/\2"),
    (r"EncDecBlock(\d+)/SelfAttn/(.*)", r"Block\1/SelfAttn/\2"),
    (r"EncDecBlock(\d+)/LayerNorm3/(.*)", r"Block\1/LayerNorm2/\2"),
    (r"EncDecBlock(\d+)/MLP/(.*)", r"Block\1/MLP/\2"),
    (r"LayerNorm/(.*)", r"LayerNorm/\1"),
    (r"LogitsDense/(.*)", r"LogitsDense/\1"),
)


def lm_params_from_cappa(lm_params: Mapping[str, Any], decoder_params: Mapping[str, Any]):
  """Copies a CapPa decoder's weights into the language model where shapes allow.

  Token embedding (the decoder's extra [MASK] row is dropped), position embedding (the
  first rows), self-attention, LayerNorms, MLP, final LayerNorm and logits layer, for the
  first min(num_layers) blocks; the cross-attention and its LayerNorm2 have no counterpart.

  Returns:
    (new lm params as numpy arrays, dict with 'copied' and 'kept' lists of lm paths).
  """
  lm_flat = {k: np.asarray(v) for k, v in npz.flatten(lm_params).items()}
  copied = []
  for src, value in npz.flatten(decoder_params).items():
    value = np.asarray(value)
    for pattern, target in _CAPPA_TO_LM:
      if re.fullmatch(pattern, src):
        dst = re.sub(pattern, target, src)
        if dst not in lm_flat:
          break
        want = lm_flat[dst].shape
        if dst == "EmbedTargets/embedding" and value.shape[1:] == want[1:]:
          value = value[:want[0]]  # The [MASK] row (and any extra rows) go.
        if dst == "pos_embedding" and value.shape[2:] == want[2:]:
          rows = min(value.shape[1], want[1])
          value = np.concatenate([value[:, :rows], lm_flat[dst][:, rows:]], axis=1)
        if value.shape == want:
          lm_flat[dst] = value.astype(lm_flat[dst].dtype)
          copied.append(dst)
        break
  kept = sorted(set(lm_flat) - set(copied))
  return npz.unflatten(lm_flat), {"copied": sorted(copied), "kept": kept}


def load_pretrained(params: Mapping[str, Any], config: Any) -> dict[str, Any]:
  """Trainer hook, called once on a fresh start: loads config.init (locvqa_jax/vqa_init.py)."""
  from locvqa_jax import vqa_init  # pylint: disable=g-import-not-at-top
  return vqa_init.load_pretrained(params, config)
