r"""Decoding speed of the difference-VQA model: greedy and beam, with and without the KV cache.

  python tools/bench_decode.py [--lm micro] [--variant micro] [--res 128] [--batch 16] \
      [--question_len 16] [--max_decode_len 97] [--beams 1,4] [--repeats 3] [--vocab 2000]

Random weights (decoding cost does not depend on their values) and cached encoder features, as in
training with a frozen encoder. To make every method generate exactly max_decode_len tokens, eos is
set to an id the model never emits; answers/s = batch / time, tokens/s = batch * max_decode_len /
time (beam search counts the tokens of the returned answer, not of all beams). Compile time is
reported apart and excluded. Prints one table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position

from locvqa_jax import decoding  # pylint: disable=wrong-import-position
from locvqa_jax.models import diff_vqa  # pylint: disable=wrong-import-position
from locvqa_jax.models import vit  # pylint: disable=wrong-import-position


def build(args):
  """(model, params, features [B, 2, N, D], prefix [B, P], prefix_len [B])."""
  model = diff_vqa.Model(encoder=dict(variant=args.variant), lm_preset=args.lm,
                         lm=dict(vocab_size=args.vocab,
                                 max_len=args.question_len + args.max_decode_len))
  enc = vit.Model(variant=args.variant).resolved()
  n = (args.res // enc["patch_size"][0]) ** 2
  feats = jax.random.normal(jax.random.PRNGKey(0), (args.batch, 2, n, enc["width"]))
  prefix = jax.random.randint(jax.random.PRNGKey(1), (args.batch, args.question_len), 4,
                              args.vocab)
  prefix = prefix.at[:, 0].set(2)
  text = jnp.zeros((1, 4), jnp.int32)
  params = jax.jit(model.init)(jax.random.PRNGKey(2), feats[:1], text, text)["params"]
  # Non-zero logits layer, so the argmax is not a constant.
  params["lm"]["LogitsDense"]["kernel"] = 0.02 * jax.random.normal(
      jax.random.PRNGKey(3), params["lm"]["LogitsDense"]["kernel"].shape)
  prefix_len = jnp.full((args.batch,), args.question_len, jnp.int32)
  return model, params, feats, prefix, prefix_len


def timed(fn, repeats):
  t0 = time.perf_counter()
  jax.block_until_ready(fn())
  compile_s = time.perf_counter() - t0
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return compile_s, min(times)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--lm", default="micro", choices=sorted(diff_vqa.LM_PRESETS))
  parser.add_argument("--variant", default="micro")
  parser.add_argument("--res", type=int, default=128)
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--question_len", type=int, default=16)
  parser.add_argument("--max_decode_len", type=int, default=97)
  parser.add_argument("--beams", default="1,4", help="comma-separated beam sizes (1: greedy)")
  parser.add_argument("--vocab", type=int, default=2000)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--no_uncached", action="store_true", help="skip the uncached runs")
  args = parser.parse_args(argv)
  model, params, feats, prefix, prefix_len = build(args)
  never = args.vocab + 7  # An eos id outside the vocabulary: full-length decodes.
  rows = []
  for beam in (int(b) for b in args.beams.split(",")):
    for use_cache in (True, False) if not args.no_uncached else (True,):
      if beam == 1:
        name = "greedy"
        fn = jax.jit(lambda p, f, x, n, c=use_cache: decoding.greedy_decode(
            model, p, f, x, n, max_decode_len=args.max_decode_len, eos_id=never, use_cache=c))
      else:
        name = f"beam {beam}"
        fn = jax.jit(lambda p, f, x, n, c=use_cache, k=beam: decoding.beam_search(
            model, p, f, x, n, max_decode_len=args.max_decode_len, beam_size=k, eos_id=never,
            use_cache=c)[0])
      compile_s, run_s = timed(lambda fn=fn: fn(params, feats, prefix, prefix_len),
                               args.repeats)
      rows.append((name, "yes" if use_cache else "no", f"{compile_s:.1f}", f"{run_s:.3f}",
                   f"{args.batch / run_s:.1f}", f"{args.batch * args.max_decode_len / run_s:.0f}"))
  n_img = feats.shape[1] * feats.shape[2]
  print(f"device {jax.devices()[0].device_kind} x{jax.device_count()}; lm {args.lm}, encoder "
        f"{args.variant} at {args.res} ({n_img} image tokens), batch {args.batch}, question "
        f"{args.question_len} tokens, {args.max_decode_len} tokens generated")
  header = ("method", "KV cache", "compile s", "run s", "answers/s", "tokens/s")
  widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
  fmt = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                                for i, (c, w) in enumerate(zip(cells, widths)))
  print(fmt(header))
  print(fmt(["-" * w for w in widths]))
  for r in rows:
    print(fmt(r))


if __name__ == "__main__":
  main()
