r"""Runs one training step as two JAX processes on this machine and checks they agree.

  python tools/multihost_check.py [--config configs/pretrain_locca.py:runlocal] \
      [--devices_per_process 2] [--port 0]

The parent starts two processes with `jax.distributed.initialize(coordinator_address=
'localhost:PORT', num_processes=2, process_id=i)` on the CPU backend (gloo collectives), each
with `--devices_per_process` fake CPU devices. Each process builds the global mesh
('data', 'fsdp') over all devices of both processes, feeds its own half of a fixed random batch
(CONTRACTS D shapes from the config) through `sharding.make_global_batch`, and runs one
`train.build_trainer` update step. The parent then runs the same step as one process over the
same number of devices and prints a table: global devices and mesh seen by each process, the
step's loss and a parameter checksum. Exit status 0 when both processes agree with each other
and with the single-process step.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _env(devices: int) -> dict[str, str]:
  env = dict(os.environ)
  env["JAX_PLATFORMS"] = "cpu"
  flags = [f for f in env.get("XLA_FLAGS", "").split()
           if "xla_force_host_platform_device_count" not in f]
  env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={devices}"])
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [_REPO, env.get("PYTHONPATH", "")]))
  return env


def random_batch(config, global_batch: int, vocab_size: int):
  """A fixed CONTRACTS D batch with the config's shapes (same on every process).

  For a difference-VQA config the images are pixel pairs [B, 2, R, R, C] (the encoder runs in
  the step, as without a features cache).
  """
  import numpy as np
  rng = np.random.default_rng(1234)
  res, length = int(config.input.res.lstrip("r")), int(config.input.text_len)
  text = rng.integers(4, vocab_size, size=(global_batch, length)).astype(np.int32)
  text[:, 0], text[:, -1] = 2, 1
  mask_ar = np.zeros_like(text)
  mask_ar[:, 3:] = 1
  image_shape = (global_batch, res, res, 1)
  if config.get("model_name") == "diff_vqa":  # Reference and main image of each question.
    image_shape = (global_batch, 2, res, res, int(config.model.encoder.get("channels", 1)))
  return {"image": rng.uniform(-1, 1, image_shape).astype(np.float32),
          "text": text, "mask_ar": mask_ar, "mask_loss": mask_ar.copy(),
          "task_id": rng.integers(0, config.loss.num_tasks, global_batch).astype(np.int32),
          "box": rng.uniform(0, 1, (global_batch, 4)).astype(np.float32),
          "region_id": rng.integers(-1, 36, global_batch).astype(np.int32)}


def run_step(args, process_id: int | None) -> dict:
  """One update step; in a child process after jax.distributed.initialize."""
  if process_id is not None:
    import jax
    jax.distributed.initialize(coordinator_address=f"localhost:{args.port}",
                               num_processes=args.num_processes, process_id=process_id)
  import jax
  import numpy as np
  from locvqa_jax import config as config_lib
  from locvqa_jax import sharding
  from locvqa_jax import train

  config = config_lib.load_config(args.config, [("mesh", "[('data', -1), ('fsdp', 2)]")])
  with config.unlocked():
    config.vocab_size = args.vocab_size
  mesh = sharding.make_mesh(config.mesh)
  global_batch = args.batch_size
  batch = random_batch(config, global_batch, args.vocab_size)
  n = global_batch // jax.process_count()
  local = {k: v[jax.process_index() * n:(jax.process_index() + 1) * n] for k, v in batch.items()}
  trainer = train.build_trainer(config, mesh, local)
  state = trainer.init_state(jax.random.PRNGKey(0))
  state, metrics = trainer.update_step(state, sharding.make_global_batch(local, mesh))
  checksum = jax.jit(lambda p: sum(jax.numpy.sum(x.astype(jax.numpy.float32) ** 2)
                                   for x in jax.tree.leaves(p)),
                     out_shardings=sharding.replicated(mesh))(state["params"])
  return {"process": jax.process_index(), "processes": jax.process_count(),
          "global_devices": jax.device_count(), "local_devices": jax.local_device_count(),
          "mesh": dict(mesh.shape), "loss": float(np.asarray(metrics["train/loss"])),
          "param_sq_sum": float(np.asarray(checksum))}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", default=os.path.join(_REPO, "configs/pretrain_locca.py") +
                      ":runlocal")
  parser.add_argument("--devices_per_process", type=int, default=2)
  parser.add_argument("--num_processes", type=int, default=2)
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--vocab_size", type=int, default=1100)
  parser.add_argument("--port", type=int, default=0)
  parser.add_argument("--process_id", type=int, default=None, help=argparse.SUPPRESS)
  parser.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--timeout", type=float, default=600)
  args = parser.parse_args(argv)

  if args.process_id is not None or args.reference:
    print("RESULT " + json.dumps(run_step(args, args.process_id)), flush=True)
    return 0

  args.port = args.port or _free_port()
  base = [sys.executable, os.path.abspath(__file__), "--config", args.config,
          "--batch_size", str(args.batch_size), "--vocab_size", str(args.vocab_size),
          "--num_processes", str(args.num_processes), "--port", str(args.port)]
  procs = [subprocess.Popen(base + ["--process_id", str(i)], env=_env(args.devices_per_process),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(args.num_processes)]
  total = args.devices_per_process * args.num_processes
  ref = subprocess.Popen(base + ["--reference"], env=_env(total), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
  results, failed = [], False
  for name, p in [(f"process {i}", p) for i, p in enumerate(procs)] + [("reference", ref)]:
    try:
      out, _ = p.communicate(timeout=args.timeout)
    except subprocess.TimeoutExpired:
      p.kill()
      out, _ = p.communicate()
      print(f"{name}: timed out after {args.timeout} s")
    lines = [l for l in out.splitlines() if l.startswith("RESULT ")]
    if p.returncode != 0 or not lines:
      failed = True
      print(f"{name} failed (exit {p.returncode}); last output:\n" + "\n".join(
          out.splitlines()[-25:]))
      continue
    results.append((name, json.loads(lines[-1][len("RESULT "):])))
  if failed:
    return 1

  print(f"{'run':<11} {'procs':>5} {'global dev':>10} {'local dev':>9} {'mesh':<24} "
        f"{'loss':>12} {'sum(param^2)':>14}")
  for name, r in results:
    print(f"{name:<11} {r['processes']:>5} {r['global_devices']:>10} {r['local_devices']:>9} "
          f"{str(r['mesh']):<24} {r['loss']:>12.6f} {r['param_sq_sum']:>14.6f}")
  losses = [r["loss"] for _, r in results]
  sums = [r["param_sq_sum"] for _, r in results]
  agree = (max(losses) - min(losses) <= 1e-5 * max(1.0, abs(losses[0])) and
           max(sums) - min(sums) <= 1e-5 * max(1.0, abs(sums[0])) and
           all(r["global_devices"] == total for _, r in results))
  print("agree" if agree else "DISAGREE")
  return 0 if agree else 1


if __name__ == "__main__":
  sys.exit(main())
