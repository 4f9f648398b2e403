"""CapPa-style image-to-text encoder-decoder with prefix-LM masking and a KV cache.

The encoder is `vit.Model` (params['encoder'], big_vision names). The decoder
(params['decoder']) embeds tokens (vocab_size + 1 rows; the last row is the [MASK]
id = vocab_size used by parallel prediction), adds a learned position embedding and
runs pre-LN blocks of self-attention, cross-attention to every encoder token and an
MLP, then a final LayerNorm and a zero-initialised logits layer over vocab_size
(the [MASK] id is never predicted). Decoder parameter names follow big_vision's CapPa:

  EmbedTargets/embedding [V+1, E]      pos_embedding [1, max_len, E]
  EncDecBlock{i}/{LayerNorm1, SelfAttn/{query,key,value,out}, LayerNorm2,
                  CrossAttn/{query,key,value,out}, LayerNorm3, MLP/{Dense_0,Dense_1}}
  LayerNorm, LogitsDense

Attention masks come from `mask_ar` (CONTRACTS D): position i may attend to key j
iff cumsum(mask_ar)[j] <= cumsum(mask_ar)[i], so the bos + prefix positions (mask_ar
0) see each other bidirectionally and the suffix (mask_ar 1) is causal. An all-zero
mask_ar makes the whole sequence bidirectional (parallel prediction).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
from typing import Any, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from locvqa_jax.models import common
from locvqa_jax.models import vit

# Presets: `micro` is the CPU smoke size; `cappa_b16` is big_vision's CapPa reference
# (B/16 encoder, 6-layer decoder of the same width, no decoder biases); `locca_so400m`
# is the authors' stage-1 model (So400m/14 encoder, 12 x 768 decoder).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "micro": dict(
        encoder=dict(variant="micro", pool_type="none"),
        decoder=dict(num_layers=2, emb_dim=64, mlp_dim=128, num_heads=2, max_len=256)),
    "cappa_b16": dict(
        encoder=dict(variant="B/16", pool_type="none"),
        decoder=dict(num_layers=6, emb_dim=768, mlp_dim=3072, num_heads=12, use_bias=False)),
    "locca_so400m": dict(
        encoder=dict(variant="So400m/14", pool_type="none"),
        decoder=dict(num_layers=12, emb_dim=768, mlp_dim=3072, num_heads=12, use_bias=False)),
}


def prefix_lm_mask(mask_ar: jax.Array, mask_tokens: Optional[jax.Array] = None) -> jax.Array:
  """Self-attention mask from mask_ar.

  Args:
    mask_ar: [B, L] int, 1 on causal (suffix) positions, 0 on prefix positions.
    mask_tokens: optional [B, L], 1 on real tokens; 0 keys (padding) are not attended.

  Returns:
    [B, L, L] bool, True where query i may attend to key j. The diagonal is always
    True so no query row is fully masked.
  """
  cum = jnp.cumsum(mask_ar.astype(jnp.int32), axis=1)
  mask = cum[:, None, :] <= cum[:, :, None]
  if mask_tokens is not None:
    mask = mask & mask_tokens.astype(bool)[:, None, :]
  eye = jnp.eye(mask_ar.shape[1], dtype=bool)[None]
  return mask | eye


def parallel_prediction_inputs(rng: jax.Array, text: jax.Array, mask_ar: jax.Array,
                               mask_loss: jax.Array, mask_id: int, masked_pred_prob: float,
                               masking_ratio: float):
  """CapPa parallel prediction applied to a batch (pure, jittable).

  Per example, with probability `masked_pred_prob`, suffix input tokens (mask_ar 1)
  are replaced by `mask_id` and self-attention becomes bidirectional. With
  `masking_ratio` < 1 only ceil(ratio * n_suffix) random suffix tokens are replaced
  and only the targets at replaced tokens count in the loss; with ratio 1 all suffix
  tokens are replaced and the loss weights are the usual mask_loss.

  Args:
    rng: PRNG key.
    text, mask_ar, mask_loss: [B, L] int, the full batch arrays (CONTRACTS D).
    mask_id: the [MASK] token id (= vocab_size).
    masked_pred_prob: probability that an example is in parallel mode.
    masking_ratio: share of suffix tokens masked in parallel mode, in (0, 1].

  Returns:
    text_in: [B, L-1] int32 model input (text[:, :-1] with masks applied).
    mask_ar_in: [B, L-1] int32 model mask_ar (all 0 for parallel-mode examples).
    loss_weights: [B, L-1] float32 weights for the targets text[:, 1:].
  """
  text = jnp.asarray(text, jnp.int32)
  suffix = jnp.asarray(mask_ar).astype(bool)
  b, _ = text.shape
  k_mode, k_pick = jax.random.split(rng)
  parallel = jax.random.uniform(k_mode, (b,)) < masked_pred_prob
  n_suffix = jnp.sum(suffix, axis=1)
  n_masked = jnp.ceil(masking_ratio * n_suffix).astype(jnp.int32)
  scores = jnp.where(suffix, jax.random.uniform(k_pick, text.shape), 2.0)
  rank = jnp.argsort(jnp.argsort(scores, axis=1), axis=1)
  hidden = suffix & (rank < n_masked[:, None]) & parallel[:, None]
  text_in = jnp.where(hidden, mask_id, text)[:, :-1]
  mask_ar_in = jnp.where(parallel[:, None], 0, jnp.asarray(mask_ar, jnp.int32))[:, :-1]
  weights = jnp.asarray(mask_loss, jnp.float32)[:, 1:]
  # The last token is never an input, so it is hidden in parallel mode even when the
  # random pick skipped it.
  hidden_target = hidden.at[:, -1].set(suffix[:, -1] & parallel)[:, 1:]
  partial = parallel & (masking_ratio < 1.0)
  weights = jnp.where(partial[:, None], weights * hidden_target, weights)
  return text_in, mask_ar_in, weights


class Decoder(nn.Module):
  """Text decoder over encoder tokens, usable with or without a KV cache."""
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
  # 'normal' (big_vision's N(0, 1) rows) or 'sincos': the rows of the location tokens
  # (loc_ids = (first id, count)) start as sin/cos features of the bin, so neighbouring bins
  # start close and a coordinate read back as input is a smooth function of its value.
  loc_embed_init: str = "normal"
  loc_ids: tuple[int, int] = (4, 1024)
  # 'none' (big_vision's CapPa) or 'sincos2d': a fixed 2D sin/cos position embedding is added to
  # the encoder tokens that cross-attention reads (a square grid), so keys and values carry
  # where each token is; the encoder's own output is unchanged.
  memory_posemb: str = "none"

  def _embedding_init(self):
    normal = nn.initializers.normal(stddev=1.0)
    if self.loc_embed_init == "normal":
      return normal
    if self.loc_embed_init != "sincos":
      raise ValueError(f"model.decoder.loc_embed_init={self.loc_embed_init!r}; expected "
                       "'normal' or 'sincos'")
    first, count = self.loc_ids

    def init(key, shape, dtype=jnp.float32):
      if first + count > shape[0]:
        raise ValueError(f"model.decoder.loc_ids={self.loc_ids} runs past the {shape[0]} "
                         "embedding rows")
      return normal(key, shape, dtype).at[first:first + count].set(
          loc_sincos(count, shape[1]).astype(dtype))
    return init

  def _with_memory_posemb(self, encoded: jax.Array) -> jax.Array:
    if self.memory_posemb == "none":
      return encoded
    if self.memory_posemb != "sincos2d":
      raise ValueError(f"model.decoder.memory_posemb={self.memory_posemb!r}; expected 'none' or "
                       "'sincos2d'")
    side = int(round(encoded.shape[1] ** 0.5))
    if side * side != encoded.shape[1]:
      raise ValueError(f"model.decoder.memory_posemb='sincos2d' needs a square grid of encoder "
                       f"tokens (square images, no class token), got {encoded.shape[1]}")
    pe = vit.posemb_sincos_2d(side, side, encoded.shape[2])
    return encoded + pe.astype(encoded.dtype)

  @nn.compact
  def __call__(self, tokens: jax.Array, positions: jax.Array, encoded: Optional[jax.Array],
               self_mask: jax.Array, *, cache: Optional[list] = None,
               write_pos: Optional[jax.Array] = None, deterministic: bool = True):
    """Runs the decoder.

    Args:
      tokens: [B, T] int token ids (may contain the [MASK] id = vocab_size).
      positions: [B, T] int positions (index into the position embedding).
      encoded: [B, N, D_enc] encoder tokens; may be None when `cache` holds the
        cross-attention keys and values.
      self_mask: [B, T, S] bool; S = T without a cache, S = cache length with one.
      cache: None, or a list (one dict per layer) of 'k', 'v' [B, S, H, Dh] and
        optionally 'ck', 'cv' [B, N, H, Dh]; the new keys/values are written at
        `write_pos` [B] (the position of tokens[:, 0] in the cache).
      deterministic: disables dropout.

    Returns:
      (logits [B, T, vocab_size] float32, new cache or None).
    """
    x = nn.Embed(self.vocab_size + 1, self.emb_dim, name="EmbedTargets",
                 embedding_init=self._embedding_init())(tokens)
    pe = self.param("pos_embedding", nn.initializers.normal(stddev=1 / jnp.sqrt(self.emb_dim)),
                    (1, self.max_len, self.emb_dim), jnp.float32)
    x = x + jnp.take(pe[0], positions, axis=0)
    if encoded is not None:
      encoded = self._with_memory_posemb(encoded)
    block_cls = common.DecoderBlock
    if self.remat_policy != "none":
      block_cls = nn.remat(block_cls, static_argnums=(4,),
                           policy=getattr(jax.checkpoint_policies, self.remat_policy))
    new_cache = [] if cache is not None else None
    for i in range(self.num_layers):
      block = block_cls(emb_dim=self.emb_dim, mlp_dim=self.mlp_dim or 4 * self.emb_dim,
                        num_heads=self.num_heads, dropout=self.dropout,
                        use_bias=self.use_bias, dtype_mm=self.dtype_mm, name=f"EncDecBlock{i}")
      x, layer_cache = block(x, encoded, self_mask, deterministic,
                             None if cache is None else cache[i], write_pos)
      if cache is not None:
        new_cache.append(layer_cache)
    x = nn.LayerNorm(name="LayerNorm", use_bias=self.use_bias)(x)
    logits = nn.Dense(self.vocab_size, kernel_init=nn.initializers.zeros, dtype=self.dtype_mm,
                      name="LogitsDense")(x)
    return logits.astype(jnp.float32), new_cache


def loc_sincos(count: int, dim: int) -> jax.Array:
  """[count, dim] sin/cos features of bins 0..count-1, periods from 8 bins to 2 * count.

  Row norms are sqrt(dim) (sqrt(dim - 1) for an odd dim, whose last column is 0), as for
  N(0, 1) rows; cosine similarity falls smoothly with the distance between bins.
  """
  half = dim // 2
  periods = 8.0 * (count / 4.0) ** (jnp.arange(half) / max(half - 1, 1))  # 8 .. 2 * count
  angle = 2 * jnp.pi * jnp.arange(count)[:, None] / periods[None]
  feats = jnp.concatenate([jnp.sin(angle), jnp.cos(angle)], axis=1) * jnp.sqrt(2.0)
  return jnp.pad(feats, ((0, 0), (0, dim - 2 * half)))


def _freeze(value: Any) -> Any:
  """Config values -> hashable ones, so the module can be a static jit argument."""
  if isinstance(value, Mapping):
    return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
  if isinstance(value, (list, tuple)):
    return tuple(_freeze(v) for v in value)
  return value


class EncoderDecoder(nn.Module):
  """ViT encoder + CapPa decoder. Build it with `Model(...)`.

  encoder_kw / decoder_kw are (key, value) tuples (hashable) of vit.Model and Decoder
  keyword arguments.
  """
  encoder_kw: tuple
  decoder_kw: tuple

  def setup(self):
    self.encoder = vit.Model(**dict(self.encoder_kw))
    self.decoder = Decoder(**dict(self.decoder_kw))

  def encode(self, image: jax.Array, train: bool = False) -> jax.Array:
    """image: [B, H, W, C] in [-1, 1] -> encoded tokens [B, N, D]."""
    _, out = self.encoder(image, train=train)
    return out["encoded"]

  def decode(self, encoded: jax.Array, text: jax.Array, mask_ar: jax.Array, *,
             mask_tokens: Optional[jax.Array] = None, train: bool = False) -> jax.Array:
    """Uncached (teacher-forced) decoder pass.

    Args:
      encoded: [B, N, D] encoder tokens.
      text: [B, L] input ids (text[:, :-1] of a batch, possibly masked).
      mask_ar: [B, L] int (see `prefix_lm_mask`).
      mask_tokens: optional [B, L], 0 on padding keys.
      train: enables dropout.

    Returns:
      logits [B, L, vocab_size] float32; logits[:, i] predicts the token after text[:, i].
    """
    b, length = text.shape
    self._check_len(length)
    positions = jnp.broadcast_to(jnp.arange(length), (b, length))
    logits, _ = self.decoder(text, positions, encoded, prefix_lm_mask(mask_ar, mask_tokens),
                             deterministic=not train)
    return logits

  def __call__(self, image: jax.Array, text: jax.Array, mask_ar: jax.Array, *,
               train: bool = False, mask_tokens: Optional[jax.Array] = None):
    """image [B, H, W, C], text/mask_ar [B, L] -> (logits [B, L, V], out dict)."""
    encoded = self.encode(image, train=train)
    logits = self.decode(encoded, text, mask_ar, mask_tokens=mask_tokens, train=train)
    return logits, {"encoded": encoded, "logits": logits}

  def _check_len(self, length: int):
    max_len = self.decoder.max_len
    if length > max_len:
      raise ValueError(f"Decoder sequence length {length} exceeds decoder.max_len {max_len}; "
                       "raise model.decoder.max_len or shorten the text / max_decode_len.")

  def init_cache(self, batch_size: int, cache_len: int) -> list[dict[str, jax.Array]]:
    """Empty self-attention cache: per layer 'k', 'v' zeros [B, cache_len, H, Dh]."""
    cfg = self.decoder
    head_dim = cfg.emb_dim // cfg.num_heads
    shape = (batch_size, cache_len, cfg.num_heads, head_dim)
    return [dict(k=jnp.zeros(shape, jnp.float32), v=jnp.zeros(shape, jnp.float32))
            for _ in range(cfg.num_layers)]

  def prefill(self, encoded: jax.Array, prefix: jax.Array, prefix_len: jax.Array,
              cache_len: int):
    """Runs the prefix through the decoder and fills the cache.

    Args:
      encoded: [B, N, D] encoder tokens.
      prefix: [B, P] ids: bos + prefix tokens, right-padded.
      prefix_len: [B] int, number of real tokens in each row (>= 1).
      cache_len: total cache length (P + number of tokens to generate).

    Returns:
      (logits [B, vocab_size] at each row's last prefix token, cache).
    """
    b, p = prefix.shape
    self._check_len(cache_len)
    positions = jnp.broadcast_to(jnp.arange(p), (b, p))
    keys_valid = jnp.arange(cache_len)[None, :] < prefix_len[:, None]
    self_mask = jnp.broadcast_to(keys_valid[:, None, :], (b, p, cache_len))
    logits, cache = self.decoder(prefix, positions, encoded, self_mask,
                                 cache=self.init_cache(b, cache_len),
                                 write_pos=jnp.zeros((b,), jnp.int32))
    last = jnp.take_along_axis(logits, (prefix_len - 1)[:, None, None], axis=1)[:, 0]
    return last, cache

  def decode_step(self, token: jax.Array, pos: jax.Array, cache: list):
    """Feeds one token per row at cache position `pos` [B]; returns (logits [B, V], cache)."""
    cache_len = cache[0]["k"].shape[1]
    self_mask = (jnp.arange(cache_len)[None, :] <= pos[:, None])[:, None, :]
    logits, cache = self.decoder(token[:, None], pos[:, None], None, self_mask,
                                 cache=cache, write_pos=pos)
    return logits[:, 0], cache


def check_keys(part: str, kwargs: Mapping[str, Any], module_cls: type) -> None:
  """Every key of a model.<part> config dict is a field of module_cls, or a 'did you mean'."""
  fields = {f.name for f in dataclasses.fields(module_cls)} - {"parent", "name"}
  for key in kwargs:
    if key not in fields:
      close = difflib.get_close_matches(key, sorted(fields), n=1)
      hint = f"; did you mean {close[0]!r}?" if close else f"; known: {sorted(fields)}"
      raise ValueError(f"Unknown model.{part} key {key!r}{hint}")


def Model(*, preset: Optional[str] = None, encoder: Optional[Mapping[str, Any]] = None,  # pylint: disable=invalid-name
          decoder: Optional[Mapping[str, Any]] = None) -> EncoderDecoder:
  """Builds the encoder-decoder from a preset and/or explicit kwargs.

  Args:
    preset: a name in PRESETS; `encoder` / `decoder` entries override its values.
    encoder: vit.Model kwargs (variant, pool_type, posemb, scan, dtype_mm, ...).
    decoder: Decoder kwargs; `vocab_size` is required (the tokenizer's size).
  """
  if preset is not None and preset not in PRESETS:
    raise ValueError(f"Unknown cappa preset {preset!r}; known: {sorted(PRESETS)}.")
  base = copy.deepcopy(PRESETS[preset]) if preset else dict(encoder={}, decoder={})
  enc = {**base["encoder"], **dict(encoder or {})}
  dec = {**base["decoder"], **dict(decoder or {})}
  check_keys("encoder", enc, vit.Model)
  check_keys("decoder", dec, Decoder)
  if "vocab_size" not in dec:
    raise ValueError("cappa.Model needs decoder.vocab_size (the tokenizer's vocab_size).")
  return EncoderDecoder(encoder_kw=_freeze(enc), decoder_kw=_freeze(dec))


def load_pretrained(params: Mapping[str, Any], config: Any) -> dict[str, Any]:
  """Trainer hook, called once on a fresh start: `config.model_init` initialises the encoder.

  `model_init` is '' (random init), a big_vision / SigLIP `file.npz[:subtree]`, or a local
  Hugging Face SigLIP folder (locvqa_jax/models/init_from.py); `model_dont_load` lists regexes
  of encoder parameters kept at their initial values (e.g. 'MAPHead_0/.*').
  """
  path = config.get("model_init", "")
  if not path:
    return dict(params)
  # Imported here: the loaders pull in safetensors / export code that plain training never needs.
  from locvqa_jax import sharding  # pylint: disable=g-import-not-at-top
  from locvqa_jax.models import init_from  # pylint: disable=g-import-not-at-top
  loaded = init_from.load_encoder_weights(path, jax.device_get(params["encoder"]),
                                          tuple(config.get("model_dont_load", ())))
  params = dict(params)
  params["encoder"] = jax.tree.map(sharding.place_like, loaded, params["encoder"])
  return params
