"""Attention with an explicit KV cache and the pre-LN decoder block built on it.

Keys and values are plain arrays passed in and out (no flax 'cache' collection), so a
whole prefix can be written in one call (prefill) and each row of a batch can write
at its own position (prefixes of different lengths), which beam search can also
reorder with a gather over the batch axis.
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

# Finite, so a fully masked row would give a uniform softmax instead of NaN.
_MASKED = -1e9


class Attention(nn.Module):
  """Multi-head attention, parameters laid out as flax's MultiHeadDotProductAttention.

  query/key/value kernels [D, H, Dh], out kernel [H, Dh, D]; no biases by default
  (CapPa's decoder attention has none).
  """
  emb_dim: int
  num_heads: int
  use_bias: bool = False
  dtype_mm: str = "float32"

  def setup(self):
    if self.emb_dim % self.num_heads:
      raise ValueError(f"emb_dim {self.emb_dim} is not divisible by num_heads {self.num_heads}.")
    head_dim = self.emb_dim // self.num_heads
    proj = lambda: nn.DenseGeneral((self.num_heads, head_dim), use_bias=self.use_bias,
                                   kernel_init=nn.initializers.xavier_uniform(),
                                   dtype=self.dtype_mm)
    self.query, self.key, self.value = proj(), proj(), proj()
    self.out = nn.DenseGeneral(self.emb_dim, axis=(-2, -1), use_bias=self.use_bias,
                               kernel_init=nn.initializers.xavier_uniform(), dtype=self.dtype_mm)

  def project_q(self, x: jax.Array) -> jax.Array:
    """x: [B, T, D] -> queries [B, T, H, Dh]."""
    return self.query(x)

  def project_kv(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """x: [B, S, D] -> keys, values [B, S, H, Dh]."""
    return self.key(x), self.value(x)

  def attend(self, q: jax.Array, k: jax.Array, v: jax.Array,
             mask: Optional[jax.Array]) -> jax.Array:
    """q [B, T, H, Dh], k/v [B, S, H, Dh], mask [B, T, S] bool or None -> [B, T, D]."""
    scale = q.shape[-1] ** -0.5
    logits = jnp.einsum("bthd,bshd->bhts", q * scale, k.astype(q.dtype))
    logits = logits.astype(jnp.float32)
    if mask is not None:
      logits = jnp.where(mask[:, None], logits, _MASKED)
    weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    return self.out(jnp.einsum("bhts,bshd->bthd", weights, v))


def write_cache(cache: jax.Array, update: jax.Array, pos: jax.Array) -> jax.Array:
  """Writes update [B, T, H, Dh] into cache [B, S, H, Dh] at rows' positions pos [B]."""
  put = lambda c, u, p: jax.lax.dynamic_update_slice(c, u.astype(c.dtype), (p, 0, 0))
  return jax.vmap(put)(cache, update, pos)


class MlpBlock(nn.Module):
  """Dense_0 -> GELU -> dropout -> Dense_1, biases optional (CapPa drops them)."""
  mlp_dim: int
  dropout: float = 0.0
  use_bias: bool = True
  dtype_mm: str = "float32"

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
    inits = dict(kernel_init=nn.initializers.xavier_uniform(),
                 bias_init=nn.initializers.normal(stddev=1e-6))
    d = x.shape[-1]
    x = nn.Dense(self.mlp_dim, use_bias=self.use_bias, dtype=self.dtype_mm, **inits)(x)
    x = nn.gelu(x)
    x = nn.Dropout(rate=self.dropout)(x, deterministic)
    return nn.Dense(d, use_bias=self.use_bias, dtype=self.dtype_mm, **inits)(x)


def cached_self_attention(attn: "Attention", h: jax.Array, mask: jax.Array,
                          cache: Optional[dict], write_pos: Optional[jax.Array]):
  """Self-attention of h [B, T, E] under mask [B, T, S], through the KV cache when given.

  Returns (output [B, T, E], None or the cache dict with 'k', 'v' [B, S, H, Dh] updated at
  write_pos [B]). Shared by the CapPa decoder block and the difference-VQA language model.
  """
  q = attn.project_q(h)
  k, v = attn.project_kv(h)
  new_cache = None
  if cache is not None:
    k = write_cache(cache["k"], k, write_pos)
    v = write_cache(cache["v"], v, write_pos)
    new_cache = dict(k=k, v=v)
  return attn.attend(q, k, v, mask), new_cache


class DecoderBlock(nn.Module):
  """Pre-LN block: x + SelfAttn(LN1 x), + CrossAttn(LN2 x, encoded), + MLP(LN3 x)."""
  emb_dim: int
  mlp_dim: int
  num_heads: int
  dropout: float = 0.0
  use_bias: bool = True
  dtype_mm: str = "float32"

  @nn.compact
  def __call__(self, x: jax.Array, encoded: Optional[jax.Array], self_mask: jax.Array,
               deterministic: bool = True, cache: Optional[dict] = None,
               write_pos: Optional[jax.Array] = None):
    """Applies the block.

    Args:
      x: [B, T, E] token activations.
      encoded: [B, N, D] encoder tokens (None when cache carries 'ck'/'cv').
      self_mask: [B, T, S] bool self-attention mask.
      deterministic: disables dropout.
      cache: None or dict 'k', 'v' [B, S, H, Dh] (+ 'ck', 'cv' [B, N, H, Dh]).
      write_pos: [B] int cache position of x[:, 0].

    Returns:
      (x [B, T, E], updated cache dict with 'ck'/'cv' filled, or None).
    """
    drop = lambda y: nn.Dropout(rate=self.dropout)(y, deterministic)
    attn = lambda name: Attention(self.emb_dim, self.num_heads, dtype_mm=self.dtype_mm,
                                  name=name)
    self_attn, cross_attn = attn("SelfAttn"), attn("CrossAttn")

    h = nn.LayerNorm(name="LayerNorm1", use_bias=self.use_bias)(x)
    y, new_cache = cached_self_attention(self_attn, h, self_mask, cache, write_pos)
    x = x + drop(y)

    h = nn.LayerNorm(name="LayerNorm2", use_bias=self.use_bias)(x)
    if cache is not None and "ck" in cache:
      ck, cv = cache["ck"], cache["cv"]
    else:
      ck, cv = cross_attn.project_kv(encoded)
    if new_cache is not None:
      new_cache.update(ck=ck, cv=cv)
    x = x + drop(cross_attn.attend(cross_attn.project_q(h), ck, cv, None))

    h = nn.LayerNorm(name="LayerNorm3", use_bias=self.use_bias)(x)
    x = x + drop(MlpBlock(self.mlp_dim, self.dropout, self.use_bias, self.dtype_mm,
                          name="MLP")(h, deterministic))
    return x, new_cache
