r"""Training-step benchmark: compile time, step time, examples/s and FLOPs utilisation.

  python tools/bench_train.py --config configs/pretrain_locca.py:preset=paper [--steps 10] \
      [--batch_size 32] [--vocab_size 2000] [--peak_tflops 989] [--config.key=value ...]

Builds the trainer of the config (model, optimizer, mesh, shardings; `train.build_trainer`) and
feeds random batches with the config's shapes (image res, text_len), so no dataset is needed.
Both stages' configs work: a difference-VQA config (configs/diff_vqa.py; `encoder_init` empty
gives a random encoder of its variant) gets pixel pairs [B, 2, R, R, C], so its frozen encoder
runs inside the step as it does without a features cache.
Prints one table row:

  compile s     lowering + XLA compilation of the update step
  step ms       mean wall time of --steps steps after one warm-up step (blocking on the result)
  examples/s    global batch / step time
  TFLOP/step    FLOPs of the compiled step from XLA's cost analysis, summed over devices (it
                counts rematerialised work, and a loop body once: gradient accumulation is
                multiplied back in)
  MFU           TFLOP/step / step time / (peak per device x devices)

The peak comes from --peak_tflops or, by device kind, from PEAK_TFLOPS (dense bf16 of the
accelerator); on CPU there is no table entry and MFU is left blank unless --peak_tflops is given.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO)

# Dense bf16 peak TFLOP/s per device, keyed by a substring of jax's device_kind (lower case).
PEAK_TFLOPS = {
    "h200": 989.0, "h100": 989.0, "a100": 312.0, "l4": 121.0, "a10": 125.0,
    "tpu v5p": 459.0, "tpu v5 lite": 197.0, "tpu v5e": 197.0, "tpu v4": 275.0,
    "tpu v6": 918.0, "tpu7x": 2307.0,
}


def peak_tflops(device_kind: str) -> float | None:
  kind = device_kind.lower()
  for key, value in PEAK_TFLOPS.items():
    if key in kind:
      return value
  return None


def main(argv=None) -> int:
  import jax
  import numpy as np
  from locvqa_jax import config as config_lib
  from locvqa_jax import sharding
  from locvqa_jax import train
  from multihost_check import random_batch

  argv = list(sys.argv[1:] if argv is None else argv)
  rest, overrides = config_lib.split_overrides(argv)
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", required=True)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--batch_size", type=int, default=0, help="global; 0: the config's")
  parser.add_argument("--vocab_size", type=int, default=2000,
                      help="tokenizer size to assume (the model's vocabulary)")
  parser.add_argument("--peak_tflops", type=float, default=0.0,
                      help="peak TFLOP/s per device; 0: look up the device kind")
  args = parser.parse_args(rest)

  config = config_lib.load_config(args.config, overrides)
  with config.unlocked():
    config.vocab_size = args.vocab_size
  mesh = sharding.make_mesh(config.mesh)
  global_batch = args.batch_size or config.input.batch_size
  batch = random_batch(config, global_batch, args.vocab_size)
  trainer = train.build_trainer(config, mesh, batch)
  state = trainer.init_state(jax.random.PRNGKey(0))
  gbatch = sharding.make_global_batch(batch, mesh)

  t0 = time.perf_counter()
  compiled = trainer.update_step.lower(state, gbatch).compile()
  compile_s = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops_per_device = float(cost.get("flops", 0.0)) if cost else 0.0
  flops = flops_per_device * jax.device_count() * max(1, int(config.grad_accum_steps))

  state, metrics = compiled(state, gbatch)  # Warm-up.
  jax.block_until_ready(metrics)
  t0 = time.perf_counter()
  for _ in range(args.steps):
    state, metrics = compiled(state, gbatch)
  jax.block_until_ready((state, metrics))
  step_s = (time.perf_counter() - t0) / args.steps

  kind = jax.devices()[0].device_kind
  peak = args.peak_tflops or peak_tflops(kind)
  mfu = (flops / step_s / (peak * 1e12 * jax.device_count())) if peak and flops else None
  print(f"config: {args.config} {' '.join(f'--config.{k}={v}' for k, v in overrides)}")
  print(f"devices: {jax.device_count()} x {kind}, mesh {dict(mesh.shape)}, "
        f"params {trainer.num_params:,}, global batch {global_batch}, "
        f"grad accum {config.grad_accum_steps}, loss {float(np.asarray(metrics['train/loss'])):.4f}")
  header = ("compile s", "step ms", "examples/s", "TFLOP/step", "peak TFLOP/s/dev", "MFU")
  row = (f"{compile_s:.1f}", f"{step_s * 1e3:.1f}", f"{global_batch / step_s:.1f}",
         f"{flops / 1e12:.3f}", f"{peak:.0f}" if peak else "-",
         f"{100 * mfu:.1f}%" if mfu is not None else "-")
  widths = [max(len(h), len(r)) for h, r in zip(header, row)]
  print(" | ".join(h.rjust(w) for h, w in zip(header, widths)))
  print(" | ".join(r.rjust(w) for r, w in zip(row, widths)))
  return 0


if __name__ == "__main__":
  sys.exit(main())
