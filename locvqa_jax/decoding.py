"""Autoregressive decoding with an explicit KV cache: greedy and beam search.

Works for any model with the methods `prefill(encoded, prefix, prefix_len, cache_len)`,
`decode_step(token, pos, cache)` and (uncached reference) `decode(encoded, text, mask_ar,
mask_tokens=)`: the CapPa encoder-decoder and the difference-VQA model.

All functions are pure and jittable with `model` and the lengths static, e.g.
`jax.jit(greedy_decode, static_argnums=0, static_argnames=("max_decode_len",))`; beam_search
also needs beam_size, length_penalty and no_repeat_ngram_size static.
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


def _start(model: Any, params: Any, encoded: Any, prefix: jax.Array, prefix_len: jax.Array,
           max_decode_len: int, use_cache: bool):
  """(logits [B, V] for the first new token, decoding state with the batch on axis 0)."""
  b, p = prefix.shape
  if use_cache:
    return prefill(model, params, encoded, prefix, prefix_len, p + max_decode_len)
  tokens = jnp.concatenate([prefix, jnp.zeros((b, max_decode_len), prefix.dtype)], axis=1)
  state = {"encoded": encoded, "tokens": tokens, "prefix_len": prefix_len}
  return _uncached_logits(model, params, state, prefix_len - 1), state


def _uncached_logits(model: Any, params: Any, state: dict, pos: jax.Array) -> jax.Array:
  """Full teacher-forced pass over the tokens so far; logits [B, V] at positions pos [B]."""
  tokens = state["tokens"]
  idx = jnp.arange(tokens.shape[1])[None, :]
  mask_ar = (idx >= state["prefix_len"][:, None]).astype(jnp.int32)
  mask_tokens = (idx <= pos[:, None]).astype(jnp.int32)
  logits = model.apply({"params": params}, state["encoded"], tokens, mask_ar,
                       mask_tokens=mask_tokens, method="decode")
  return jnp.take_along_axis(logits, pos[:, None, None], axis=1)[:, 0]


def _advance(model: Any, params: Any, token: jax.Array, pos: jax.Array, state: Any,
             use_cache: bool):
  """Appends token [B] at position pos [B]; returns (logits [B, V] for the next one, state)."""
  if use_cache:
    return step(model, params, token, pos, state)
  put = lambda row, tok, p: jax.lax.dynamic_update_slice(row, tok[None].astype(row.dtype), (p,))
  state = dict(state, tokens=jax.vmap(put)(state["tokens"], token, pos))
  return _uncached_logits(model, params, state, pos), state


def greedy_decode(model: Any, params: Any, encoded: Any, prefix: jax.Array,
                  prefix_len: jax.Array, *, max_decode_len: int, eos_id: int = 1,
                  pad_id: int = 0, use_cache: bool = True,
                  allowed: Optional[jax.Array] = None) -> jax.Array:
  """Greedy decoding, stopping early once every row emitted eos.

  Args:
    model: a cappa.EncoderDecoder or diff_vqa.DiffVqa (static under jit): anything with
      `prefill`, `decode_step` and `decode` methods.
    params: its parameters.
    encoded: what the model's prefill reads: [B, N, D] encoder tokens (cappa), or the image
      pair as pixels [B, 2, R, R, C] or cached features [B, 2, N, D] (diff_vqa).
    prefix: [B, P] int ids: bos + prefix tokens, right-padded.
    prefix_len: [B] int number of real prefix tokens (>= 1).
    max_decode_len: number of tokens to generate at most (static).
    eos_id, pad_id: token ids; tokens after a row's eos are pad_id.
    allowed: optional [B, K, V'] bool (K <= max_decode_len, V' >= the logits' V): generated
      token t < K of row b is the argmax over the ids where allowed[b, t] is True (constrained
      decoding, e.g. a box where the template puts one); later tokens are unconstrained. A row
      of all True leaves that step free.
    use_cache: False recomputes the whole sequence at every step (the reference and the
      benchmark's baseline).

  Returns:
    [B, max_decode_len] int32 generated tokens (eos included).
  """
  b = prefix.shape[0]
  prefix_len = jnp.asarray(prefix_len, jnp.int32)
  logits, state = _start(model, params, encoded, prefix, prefix_len, max_decode_len, use_cache)
  out = jnp.full((b, max_decode_len), pad_id, jnp.int32)

  def pick(logits, t):
    if allowed is not None:
      row = jax.lax.dynamic_index_in_dim(allowed, jnp.minimum(t, allowed.shape[1] - 1), axis=1,
                                         keepdims=False)
      row = row[:, :logits.shape[-1]] | (t >= allowed.shape[1])
      logits = jnp.where(row, logits, -jnp.inf)
    return jnp.argmax(logits, -1).astype(jnp.int32)

  init = (jnp.int32(0), out, pick(logits, jnp.int32(0)), prefix_len,
          jnp.zeros((b,), bool), state)

  def cond(carry):
    t, _, _, _, done, _ = carry
    return (t < max_decode_len) & ~jnp.all(done)

  def body(carry):
    t, out, token, pos, done, state = carry
    out = out.at[:, t].set(jnp.where(done, pad_id, token))
    done = done | (token == eos_id)
    logits, state = _advance(model, params, token, pos, state, use_cache)
    return t + 1, out, pick(logits, t + 1), pos + 1, done, state

  return jax.lax.while_loop(cond, body, init)[1]


def no_repeat_ngram_mask(seqs: jax.Array, t: jax.Array, n: int, vocab_size: int) -> jax.Array:
  """Tokens that would repeat an n-gram already generated.

  Args:
    seqs: [B, K, T] generated tokens (positions >= t not yet written).
    t: the position about to be written.
    n: n-gram size (>= 1).
    vocab_size: V.

  Returns:
    [B, K, V] bool, True where the token at t would complete an n-gram that occurs fully
    within positions < t.
  """
  b, k, length = seqs.shape
  starts = length - n + 1
  if starts <= 0:
    return jnp.zeros((b, k, vocab_size), bool)
  windows = seqs[..., jnp.arange(starts)[:, None] + jnp.arange(n)[None, :]]  # [B, K, W, n]
  tail = jnp.take(seqs, jnp.clip(t - (n - 1) + jnp.arange(n - 1), 0, length - 1), axis=-1)
  match = jnp.all(windows[..., :n - 1] == tail[:, :, None, :], axis=-1)
  match &= (jnp.arange(starts) + n - 1 < t)[None, None, :]
  bi = jnp.arange(b)[:, None, None]
  ki = jnp.arange(k)[None, :, None]
  banned = jnp.zeros((b, k, vocab_size), jnp.int32)
  banned = banned.at[bi, ki, windows[..., n - 1]].max(match.astype(jnp.int32))
  return banned > 0


def beam_search(model: Any, params: Any, encoded: Any, prefix: jax.Array,
                prefix_len: jax.Array, *, max_decode_len: int, beam_size: int = 4,
                length_penalty: float = 1.0, no_repeat_ngram_size: int = 0, eos_id: int = 1,
                pad_id: int = 0, use_cache: bool = True) -> tuple[jax.Array, jax.Array]:
  """Batched beam search with the KV cache (Hugging Face's rules with early stopping).

  Each step expands every alive beam by every token, keeps the best 2K candidates, moves
  those ending in eos that rank among the first K to the finished set (scored by the
  summed log-probability / length ** length_penalty, length counting eos) and keeps the
  best K others alive. An example is done once it holds K finished hypotheses; at
  max_decode_len, alive beams compete with the finished ones (length = max_decode_len).
  With beam_size 1 this is greedy decoding. The prefix is run once per example and its
  cache repeated for the K beams; beams are reordered by a gather on the batch axis.

  Args:
    model, params, encoded, prefix, prefix_len, max_decode_len, eos_id, pad_id, use_cache:
      as `greedy_decode`.
    beam_size: K (static).
    length_penalty: exponent of the length normalisation (0: raw log-probability).
    no_repeat_ngram_size: n > 0 forbids repeating any n-gram of the generated tokens.

  Returns:
    (tokens [B, max_decode_len] int32 of the best hypothesis, pad after eos;
     scores [B] float32, its length-normalised log-probability).
  """
  b, k, length = prefix.shape[0], beam_size, max_decode_len
  prefix_len = jnp.asarray(prefix_len, jnp.int32)
  logits, state = _start(model, params, encoded, prefix, prefix_len, max_decode_len, use_cache)
  vocab = logits.shape[-1]
  repeat = lambda x: jnp.repeat(x, k, axis=0)
  state = jax.tree.map(repeat, state)
  neg_inf = jnp.float32(-jnp.inf)
  # Only beam 0 is live at first, so the K copies do not propose the same K tokens.
  alive_lp = jnp.tile(jnp.where(jnp.arange(k) == 0, 0.0, neg_inf)[None], (b, 1))
  init = dict(t=jnp.int32(0), logits=repeat(logits), state=state,
              alive_seq=jnp.full((b, k, length), pad_id, jnp.int32), alive_lp=alive_lp,
              fin_seq=jnp.full((b, k, length), pad_id, jnp.int32),
              fin_score=jnp.full((b, k), neg_inf), done=jnp.zeros((b,), bool))
  take = lambda x, i: jnp.take_along_axis(x, i.reshape(i.shape + (1,) * (x.ndim - 2)), axis=1)

  def cond(c):
    return (c["t"] < length) & ~jnp.all(c["done"])

  def body(c):
    t = c["t"]
    lp = jax.nn.log_softmax(c["logits"].astype(jnp.float32)).reshape(b, k, vocab)
    if no_repeat_ngram_size > 0:
      lp = jnp.where(no_repeat_ngram_mask(c["alive_seq"], t, no_repeat_ngram_size, vocab),
                     neg_inf, lp)
    cand = (c["alive_lp"][:, :, None] + lp).reshape(b, k * vocab)
    top_lp, top_i = jax.lax.top_k(cand, 2 * k)
    parent, token = top_i // vocab, (top_i % vocab).astype(jnp.int32)
    seqs = take(c["alive_seq"], parent).at[:, :, t].set(token)  # [B, 2K, T]
    is_eos = token == eos_id
    # Finished: eos candidates among the first K ranks.
    norm = jnp.power((t + 1).astype(jnp.float32), length_penalty)
    new_fin = jnp.where(is_eos & (jnp.arange(2 * k) < k)[None], top_lp / norm, neg_inf)
    fin_score, fin_i = jax.lax.top_k(jnp.concatenate([c["fin_score"], new_fin], 1), k)
    fin_seq = take(jnp.concatenate([c["fin_seq"], seqs], 1), fin_i)
    keep = c["done"]
    fin_score = jnp.where(keep[:, None], c["fin_score"], fin_score)
    fin_seq = jnp.where(keep[:, None, None], c["fin_seq"], fin_seq)
    done = keep | (jnp.sum(jnp.isfinite(fin_score), 1) >= k)
    # Alive: the best K candidates that did not end.
    alive_lp, alive_i = jax.lax.top_k(jnp.where(is_eos, neg_inf, top_lp), k)
    alive_seq = take(seqs, alive_i)
    rows = (jnp.arange(b)[:, None] * k + take(parent, alive_i)).reshape(-1)
    state = jax.tree.map(lambda x: x[rows], c["state"])
    next_token = take(token, alive_i).reshape(-1)
    logits, state = _advance(model, params, next_token, jnp.repeat(prefix_len, k) + t, state,
                             use_cache)
    return dict(t=t + 1, logits=logits, state=state, alive_seq=alive_seq, alive_lp=alive_lp,
                fin_seq=fin_seq, fin_score=fin_score, done=done)

  c = jax.lax.while_loop(cond, body, init)
  # Examples that ran out of length: their alive beams compete with what finished.
  alive_score = c["alive_lp"] / jnp.power(c["t"].astype(jnp.float32), length_penalty)
  alive_score = jnp.where(c["done"][:, None], neg_inf, alive_score)
  scores = jnp.concatenate([c["fin_score"], alive_score], 1)
  best = jnp.argmax(scores, 1)
  seqs = jnp.concatenate([c["fin_seq"], c["alive_seq"]], 1)
  tokens = jnp.take_along_axis(seqs, best[:, None, None], axis=1)[:, 0]
  return tokens, jnp.take_along_axis(scores, best[:, None], axis=1)[:, 0]


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
