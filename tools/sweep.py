r"""Runs a grid of training configs, optionally fine-tunes and evaluates each, and tabulates them.

  python tools/sweep.py --config configs/pretrain_locca.py:runlocal \
      --grid loss.masked_pred_prob=0,0.25,0.5,0.75 [--grid TARGET=V1,V2 ...] [--seeds N] \
      [--then configs/diff_vqa.py:runlocal] [--set TARGET=VALUE ...] [--out DIR] \
      [--metrics pre:val/loss,test:overall.nlg.cider] [--preset NAME] \
      [--print-commands | --collect] [--keep_going]

Each --grid is one axis (TARGET = a `--config.` key, `arg:NAME` for the config file's argument,
`then:` for the --then config; locvqa_jax/sweep/grid.py); the points are the product of the
axes and each point runs seeds 0..N-1 (`--config.seed`). Every key and argument is checked
against the configs before anything runs, so a typo fails at once with the closest key named.

For point P and seed S the stages run in OUT/P/seed<S>/: `<config stem>/` trains the sweep's
config; with --then, `<then stem>/` trains the --then config with `encoder_init=` that workdir,
and a difference-VQA stage is followed by `python -m locvqa_jax.evaluate --workdir W --split
test`. A stage that succeeded gets W/sweep_done.json; a rerun skips it, so an interrupted sweep
resumes where it stopped (delete a point's directory to redo it). Output goes to
OUT/P/seed<S>/<stage>.log.

--print-commands prints one shell line per unfinished point instead (its seeds and stages
joined with &&, writing the same markers) for a cluster; --collect only rebuilds the tables.
Either way the sweep ends by writing OUT/sweep.csv (one row per point x seed), OUT/sweep.md
(mean ± std over seeds) and OUT/sweep.png (locvqa_jax/sweep/report.py). docs/sweeps.md has more.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import subprocess
import sys
import time
from typing import Callable, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# pylint: disable=g-import-not-at-top,wrong-import-position
from locvqa_jax import config as config_lib
from locvqa_jax.sweep import grid
from locvqa_jax.sweep import presets
from locvqa_jax.sweep import report
# pylint: enable=g-import-not-at-top,wrong-import-position

MARKER = "sweep_done.json"
# runner(argv, log_path or None) -> exit status.
Runner = Callable[[Sequence[str], Optional[str]], int]


def run_subprocess(argv: Sequence[str], log_path: Optional[str] = None) -> int:
  """Runs argv from the repository root, its output appended to log_path (else the terminal)."""
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH", "")]))
  if not log_path:
    return subprocess.run(list(argv), cwd=REPO, env=env, check=False).returncode
  with open(log_path, "a") as log:
    log.write(f"$ {shlex.join(argv)}\n")
    log.flush()
    return subprocess.run(list(argv), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                          check=False).returncode


@dataclasses.dataclass
class Stage:
  """One training run of one point and seed (plus its evaluation for difference VQA)."""
  key: str                      # 'pre' or 'ft' (the metric prefixes).
  workdir: str
  commands: list[list[str]]

  @property
  def marker(self) -> str:
    return os.path.join(self.workdir, MARKER)

  def marker_json(self) -> str:
    return json.dumps({"stage": self.key, "workdir": self.workdir})

  def done(self) -> bool:
    return os.path.exists(self.marker)


@dataclasses.dataclass
class Job:
  point: grid.Point
  seed: int
  dir: str
  stages: list[Stage]

  def done(self) -> bool:
    return all(s.done() for s in self.stages)


def _abs_spec(spec: str) -> str:
  path, sep, arg = spec.partition(":")
  return os.path.abspath(path) + sep + arg


def _stem(spec: str) -> str:
  return os.path.splitext(os.path.basename(spec.partition(":")[0]))[0]


def plan(args: argparse.Namespace, points: Sequence[grid.Point], fixed: Sequence[grid.Setting],
         seeds: Sequence[int]) -> tuple[list[Job], bool]:
  """Validates every point's configs (raises ConfigError) and lays out its jobs.

  Returns:
    (one job per point and seed, whether a difference-VQA stage is evaluated).
  """
  specs = [_abs_spec(args.config)] + ([_abs_spec(args.then)] if args.then else [])
  stems = [_stem(s) for s in specs]
  if len(stems) == 2 and stems[0] == stems[1]:
    stems = [stems[0] + "_1", stems[1] + "_2"]
  if args.then and "encoder_init" in grid.config_args(specs[1]):
    raise config_lib.ConfigError(f"--then {args.then}: the sweep sets encoder_init itself")
  eval_stage = None
  jobs = []
  for point in points:
    settings = tuple(fixed) + point.settings
    for stage in range(len(specs)):
      extra = {"encoder_init": ""} if stage else {}
      spec, overrides = grid.stage_config(specs[stage], settings, stage, extra)
      cfg = grid.check(spec, overrides + [("seed", "0")],
                       f"point {point.name}, --{'then' if stage else 'config'} {spec}")
      if cfg.get("model_name") == "diff_vqa":
        eval_stage = stage
    for seed in seeds:
      job_dir = os.path.join(args.out, point.name, f"seed{seed}")
      stages = []
      for stage in range(len(specs)):
        workdir = os.path.join(job_dir, stems[stage])
        extra = {"encoder_init": stages[0].workdir} if stage else {}
        spec, overrides = grid.stage_config(specs[stage], settings, stage, extra)
        train = [args.python, "-m", "locvqa_jax.train", "--config", spec, "--workdir", workdir,
                 f"--config.seed={seed}"] + [f"--config.{k}={v}" for k, v in overrides]
        commands = [train]
        if stage == eval_stage:
          commands.append([args.python, "-m", "locvqa_jax.evaluate", "--workdir", workdir,
                           "--split", args.eval_split, "--no_progress"]
                          + shlex.split(args.eval_args))
        stages.append(Stage(report.STAGES[stage], workdir, commands))
      jobs.append(Job(point, seed, job_dir, stages))
  return jobs, eval_stage is not None


def shell_line(job_group: Sequence[Job]) -> str:
  """One point's unfinished seeds and stages as one shell command line."""
  parts = [f"cd {shlex.quote(REPO)}"]
  for job in job_group:
    for stage in job.stages:
      if stage.done():
        continue
      parts += [shlex.join(c) for c in stage.commands]
      parts.append(f"printf '%s\\n' {shlex.quote(stage.marker_json())} > "
                   f"{shlex.quote(stage.marker)}")
  return " && ".join(parts)


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  return (f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600
          else f"{seconds // 60}m{seconds % 60:02d}s")


def _tail(path: str, n: int = 15) -> str:
  if not os.path.exists(path):
    return ""
  with open(path, errors="replace") as f:
    return "".join(f.readlines()[-n:])


def _run_stage(stage: Stage, runner: Runner, log: str, where: str) -> bool:
  """Runs a stage's commands; writes its marker when all succeeded."""
  for command in stage.commands:
    status = runner(command, log)
    if status != 0:
      print(f"[sweep] {where}: FAILED (exit {status}): {shlex.join(command)}\n"
            f"[sweep] last lines of {log}:\n{_tail(log)}", flush=True)
      return False
  os.makedirs(stage.workdir, exist_ok=True)
  with open(stage.marker, "w") as f:
    f.write(stage.marker_json() + "\n")
  return True


def run_jobs(jobs: Sequence[Job], num_points: int, runner: Runner, keep_going: bool) -> bool:
  """Runs the unfinished stages one after another; prints a progress line per point and seed.

  Returns:
    False when a command failed.
  """
  todo = [j for j in jobs if not j.done()]
  print(f"[sweep] {num_points} points x {len(jobs) // max(num_points, 1)} seeds: "
        f"{len(todo)} runs to do, {len(jobs) - len(todo)} done before", flush=True)
  spent, ok = [], True
  for job in jobs:
    where = f"point {job.point.index + 1}/{num_points} seed {job.seed} ({job.point.name})"
    if job.done():
      print(f"[sweep] {where}: done before, skipped", flush=True)
      continue
    left = len(todo) - len(spent)
    eta = f"ETA {_duration(sum(spent) / len(spent) * left)}" if spent else "ETA after this run"
    print(f"[sweep] {where}: running, {left} of {len(todo)} runs left, {eta}", flush=True)
    start = time.time()
    os.makedirs(job.dir, exist_ok=True)
    job_ok = all(
        _run_stage(stage, runner, os.path.join(job.dir, os.path.basename(stage.workdir) + ".log"),
                   where)
        for stage in job.stages if not stage.done())
    spent.append(time.time() - start)
    ok = ok and job_ok
    print(f"[sweep] {where}: {'finished' if job_ok else 'failed'} in {_duration(spent[-1])}",
          flush=True)
    if not job_ok and not keep_going:
      break
  return ok


def collect(jobs: Sequence[Job], axes: Sequence[grid.Axis], metrics: Sequence[str], out: str,
            title: str) -> str:
  """Writes sweep.csv, sweep.md and sweep.png under `out`; returns the Markdown table."""
  rows = []
  stage_keys = [s.key for s in jobs[0].stages] if jobs else []
  for job in jobs:
    row = {"point": job.point.name, **job.point.labels, "seed": job.seed,
           "status": "done" if job.done() else "pending"}
    row.update({f"workdir_{s.key}": s.workdir for s in job.stages})
    row.update(report.read_metrics({s.key: s.workdir for s in job.stages}, metrics))
    rows.append(row)
  os.makedirs(out, exist_ok=True)
  columns = (["point"] + [a.name for a in axes] + ["seed", "status"]
             + [f"workdir_{k}" for k in stage_keys] + list(metrics))
  report.write_csv(os.path.join(out, "sweep.csv"), columns, rows)
  table = report.markdown(rows, [a.name for a in axes], metrics, title)
  with open(os.path.join(out, "sweep.md"), "w") as f:
    f.write(table)
  report.plot(os.path.join(out, "sweep.png"), rows, axes, metrics)
  return table


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python tools/sweep.py", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", help="configs/X.py[:args], the config every point changes "
                      f"(default with --preset: {presets.DEFAULT_CONFIG})")
  parser.add_argument("--grid", action="append", default=[], metavar="TARGET=V1,V2",
                      help="one axis: KEY, arg:NAME, then:KEY or then:arg:NAME and its values")
  parser.add_argument("--set", action="append", default=[], metavar="TARGET=VALUE",
                      help="a setting of every point (not part of the directory names)")
  parser.add_argument("--seeds", type=int, help="seeds per point: 0..N-1 (default 1)")
  parser.add_argument("--then", help="configs/diff_vqa.py[:args] trained on each run's encoder")
  parser.add_argument("--preset", help=f"a ready ablation: {presets.describe()}")
  parser.add_argument("--out", help="sweep directory (default: sweeps/<preset or config>)")
  parser.add_argument("--metrics", help="comma-separated pre:KEY, ft:KEY, test:PATH (default: "
                      "validation loss, plus the test accuracies and CIDEr with an evaluation)")
  parser.add_argument("--print-commands", "--print_commands", dest="print_commands",
                      action="store_true", help="print one launch line per point, run nothing")
  parser.add_argument("--collect", action="store_true", help="only write the tables and plot")
  parser.add_argument("--keep_going", action="store_true", help="go on after a failed run")
  parser.add_argument("--eval_split", default="test", choices=("validation", "test"))
  parser.add_argument("--eval_args", default="",
                      help="extra flags of locvqa_jax.evaluate, e.g. '--no_bertscore'")
  parser.add_argument("--python", default=sys.executable, help="interpreter of the runs")
  return parser


def main(argv: Optional[Sequence[str]] = None, runner: Runner = run_subprocess) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  try:
    axes = presets.axes(args.preset, bool(args.then)) if args.preset else []
    axes += [grid.parse_axis(g) for g in args.grid]
    fixed = [grid.parse_setting(s) for s in args.set]
    if not args.then and any(s.stage for a in axes for v in a.settings for s in v):
      raise ValueError("a then: axis needs --then")
    if not args.then and any(s.stage for s in fixed):
      raise ValueError("a then: --set needs --then")
    swept = {s.target for a in axes for v in a.settings for s in v}
    if clash := sorted(swept & {s.target for s in fixed}):
      raise ValueError(f"--set and an axis both set {clash}")
    args.config = args.config or (os.path.join(REPO, presets.DEFAULT_CONFIG) if args.preset
                                  else None)
    if not args.config:
      raise ValueError("--config is required (or a --preset)")
    args.out = os.path.abspath(args.out or os.path.join(
        "sweeps", args.preset or _stem(args.config)))
    points = grid.product(axes)
    seeds = list(range(args.seeds if args.seeds is not None else 1))
    if not seeds:
      raise ValueError("--seeds must be at least 1")
    jobs, has_eval = plan(args, points, fixed, seeds)
    if args.metrics:
      metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    elif args.preset:
      metrics = presets.metric_defaults(args.preset, report.EVAL_METRICS if has_eval else ())
    else:
      metrics = ["pre:val/loss"] + (["ft:val/loss", *report.EVAL_METRICS] if has_eval
                                    else [])
    for m in metrics:
      report.parse_metric(m)
  except (ValueError, config_lib.ConfigError) as e:
    parser.error(str(e))
  if args.print_commands:
    groups = {}
    for job in jobs:
      groups.setdefault(job.point.name, []).append(job)
    pending = [g for g in groups.values() if not all(j.done() for j in g)]
    print(f"# {len(pending)} of {len(groups)} points to run; then: python tools/sweep.py "
          "... --collect", file=sys.stderr)
    for group in pending:
      print(shell_line(group))
    return 0
  ok = True
  if not args.collect:
    ok = run_jobs(jobs, len(points), runner, args.keep_going)
  title = f"Sweep {args.preset or ''} of {args.config}" + (f" then {args.then}" if args.then
                                                             else "")
  print(collect(jobs, axes, metrics, args.out, title.replace("  ", " ")))
  print(f"[sweep] wrote {os.path.join(args.out, 'sweep.csv')}, sweep.md, sweep.png", flush=True)
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
