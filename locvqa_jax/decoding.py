"""Autoregressive decoding for the CapPa encoder-decoder (greedy, KV cache).

All functions are pure and jittable with `model` and the lengths static, e.g.
`jax.jit(greedy_decode, static_argnums=0, static_argnames=("max_decode_len",))`.
Prefixes of different lengths share a batch: each row's prefix is right-padded and
`prefix_len` says how many tokens are real; each row then writes generated tokens
into the KV cache from its own position, so no left padding is needed. The cache is
a pytree with the batch on axis 0 of every leaf, so a beam search can reorder it
with a gather over that axis and reuse `prefill` / `step` below.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp

from locvqa_jax.models import cappa


def prefix_from_batch(text: jax.Array, mask_ar: jax.Array, pad_id: int = 0):
  """Cuts the decoding prefix (bos + prefix tokens) out of batch rows (CONTRACTS D).

  Args:
    text: [B, L] int ids: bos, prefix, suffix, eos, pad.
    mask_ar: [B, L] int, 1 on suffix tokens and eos.

  Returns:
    prefix [B, L] (tokens after the prefix replaced by pad_id) and prefix_len [B].
    A row without suffix keeps all its non-pad tokens as prefix.
  """
  has_suffix = jnp.any(mask_ar > 0, axis=1)
  first_suffix = jnp.argmax(mask_ar > 0, axis=1)
  n_tokens = jnp.sum(text != pad_id, axis=1)
  prefix_len = jnp.maximum(jnp.where(has_suffix, first_suffix, n_tokens), 1).astype(jnp.int32)
  keep = jnp.arange(text.shape[1])[None, :] < prefix_len[:, None]
  return jnp.where(keep, text, pad_id).astype(jnp.int32), prefix_len


def prefill(model: cappa.EncoderDecoder, params: Any, encoded: jax.Array, prefix: jax.Array,
            prefix_len: jax.Array, cache_len: int):
  """Runs the prefixes; returns (logits [B, V] for the first new token, cache)."""
  return model.apply({"params": params}, encoded, prefix, prefix_len, cache_len,
                     method="prefill")


def step(model: cappa.EncoderDecoder, params: Any, token: jax.Array, pos: jax.Array, cache):
  """Feeds token [B] at cache positions pos [B]; returns (logits [B, V], cache)."""
  return model.apply({"params": params}, token, pos, cache, method="decode_step")


def greedy_decode(model: cappa.EncoderDecoder, params: Any, encoded: jax.Array,
                  prefix: jax.Array, prefix_len: jax.Array, *, max_decode_len: int,
                  eos_id: int = 1, pad_id: int = 0,
                  allowed: Optional[jax.Array] = None) -> jax.Array:
  """Greedy decoding with the KV cache, stopping early once every row emitted eos.

  Args:
    model: a cappa.EncoderDecoder (static under jit).
    params: its parameters (params['encoder'], params['decoder']).
    encoded: [B, N, D] encoder tokens (model.encode).
    prefix: [B, P] int ids: bos + prefix tokens, right-padded.
    prefix_len: [B] int number of real prefix tokens (>= 1).
    max_decode_len: number of tokens to generate at most (static).
    eos_id, pad_id: token ids; tokens after a row's eos are pad_id.
    allowed: optional [B, K, V'] bool (K <= max_decode_len, V' >= the logits' V): generated
      token t < K of row b is the argmax over the ids where allowed[b, t] is True (constrained
      decoding, e.g. a box where the template puts one); later tokens are unconstrained. A row
      of all True leaves that step free.

  Returns:
    [B, max_decode_len] int32 generated tokens (eos included).
  """
  b, p = prefix.shape
  prefix_len = jnp.asarray(prefix_len, jnp.int32)
  logits, cache = prefill(model, params, encoded, prefix, prefix_len, p + max_decode_len)
  out = jnp.full((b, max_decode_len), pad_id, jnp.int32)

  def pick(logits, t):
    if allowed is not None:
      row = jax.lax.dynamic_index_in_dim(allowed, jnp.minimum(t, allowed.shape[1] - 1), axis=1,
                                         keepdims=False)
      row = row[:, :logits.shape[-1]] | (t >= allowed.shape[1])
      logits = jnp.where(row, logits, -jnp.inf)
    return jnp.argmax(logits, -1).astype(jnp.int32)

  init = (jnp.int32(0), out, pick(logits, jnp.int32(0)), prefix_len,
          jnp.zeros((b,), bool), cache)

  def cond(state):
    t, _, _, _, done, _ = state
    return (t < max_decode_len) & ~jnp.all(done)

  def body(state):
    t, out, token, pos, done, cache = state
    out = out.at[:, t].set(jnp.where(done, pad_id, token))
    done = done | (token == eos_id)
    logits, cache = step(model, params, token, pos, cache)
    return t + 1, out, pick(logits, t + 1), pos + 1, done, cache

  return jax.lax.while_loop(cond, body, init)[1]


def teacher_forced_argmax(model: cappa.EncoderDecoder, params: Any, encoded: jax.Array,
                          text: jax.Array, mask_ar: jax.Array,
                          mask_tokens: Optional[jax.Array] = None) -> jax.Array:
  """Uncached reference: argmax of the decoder at every position of `text`.

  Args:
    encoded: [B, N, D]; text, mask_ar: [B, L] model inputs.

  Returns:
    [B, L] int32; entry i is the prediction of the token after text[:, i].
  """
  logits = model.apply({"params": params}, encoded, text, mask_ar, mask_tokens=mask_tokens,
                       method="decode")
  return jnp.argmax(logits, -1).astype(jnp.int32)
