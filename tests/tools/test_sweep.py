"""tools/sweep.py and locvqa_jax/sweep/: grids, presets, resumption and tables on a fake runner."""

import csv
import importlib.util
import json
import os
import re
import shlex
import sys

import pytest

from locvqa_jax.sweep import grid
from locvqa_jax.sweep import presets
from locvqa_jax.sweep import report

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PRETRAIN = os.path.join(REPO, "configs", "pretrain_locca.py")
DIFF_VQA = os.path.join(REPO, "configs", "diff_vqa.py")


def _tool():
  spec = importlib.util.spec_from_file_location("tools_sweep",
                                                os.path.join(REPO, "tools", "sweep.py"))
  module = importlib.util.module_from_spec(spec)
  sys.modules["tools_sweep"] = module  # dataclasses look their module up by name.
  spec.loader.exec_module(module)
  return module


class FakeRunner:
  """Writes what the trainer and the evaluator would: metrics.jsonl and eval/test_3/metrics.json.

  The logged val/loss is the masked_pred_prob override plus 0.1 * seed, so means are known.
  """

  def __init__(self, fail_on: str = ""):
    self.calls = []
    self.fail_on = fail_on

  def __call__(self, argv, log_path):
    self.calls.append(list(argv))
    workdir = argv[argv.index("--workdir") + 1]
    if self.fail_on and self.fail_on in " ".join(argv):
      return 1
    os.makedirs(workdir, exist_ok=True)
    if "locvqa_jax.train" in argv:
      seed = int(next(a for a in argv if a.startswith("--config.seed=")).split("=")[1])
      prob = next((float(a.split("=")[1]) for a in argv
                   if a.startswith("--config.loss.masked_pred_prob=")), 0.0)
      with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
        f.write(json.dumps({"step": 1, "val/loss": 9.0}) + "\n")
        f.write(json.dumps({"step": 2, "train/loss": 1.0}) + "\n")
        f.write(json.dumps({"step": 2, "val/loss": prob + 0.1 * seed}) + "\n")
    else:
      os.makedirs(os.path.join(workdir, "eval", "test_3"), exist_ok=True)
      with open(os.path.join(workdir, "eval", "test_3", "metrics.json"), "w") as f:
        json.dump({"step": 3, "overall": {"exact_match": {"closed_accuracy": 0.5}}}, f)
    return 0


def _argv(out, *extra):
  return ["--config", PRETRAIN + ":runlocal", "--grid", "loss.masked_pred_prob=0,0.5",
          "--seeds", "2", "--then", DIFF_VQA + ":runlocal", "--out", str(out),
          "--metrics", "pre:val/loss,test:overall.exact_match.closed_accuracy,ft:val/missing",
          *extra]


def test_axis_values_are_typed_and_split_outside_brackets():
  axis = grid.parse_axis("loss.masked_pred_prob=0,0.25,1e-3")
  assert (axis.name, axis.labels, axis.values) == (
      "loss.masked_pred_prob", ("0", "0.25", "1e-3"), (0, 0.25, 0.001))
  assert grid.parse_axis("a.b=true,False").values == (True, False)
  assert grid.parse_axis("input.task_weights=(1, 2),(2,1)").values == ((1, 2), (2, 1))
  assert grid.parse_axis("variant=B/16,micro").values == ("B/16", "micro")
  tasks = grid.parse_axis("arg:tasks=cap+aref,cap")
  assert tasks.name == "tasks"
  assert tasks.settings[0] == (grid.Setting(0, "arg", "tasks", "cap+aref"),)
  then = grid.parse_axis("then:arg:res=224,448")
  assert (then.name, then.settings[1][0].stage, then.settings[1][0].target) == (
      "then:res", 1, "then:arg:res")
  for bad, message in (("lr", "expected TARGET=V1"), ("lr=1,(2", "unclosed"),
                       ("lr=1,,2", "empty value"), ("lr=1,1", "repeated"),
                       ("arg:a.b=1", "no dots"), ("-x=1", "not a config key")):
    with pytest.raises(ValueError, match=re.escape(message)):
      grid.parse_axis(bad)


def test_product_orders_points_and_names_them():
  points = grid.product([grid.parse_axis("loss.masked_pred_prob=0,0.5"),
                         grid.parse_axis("arg:tasks=cap+aref,cap"),
                         grid.parse_axis("then:lr=1e-3")])
  assert [p.name for p in points] == [
      "masked_pred_prob-0__tasks-cap+aref__ft.lr-1e-3", "masked_pred_prob-0__tasks-cap__ft.lr-1e-3",
      "masked_pred_prob-0.5__tasks-cap+aref__ft.lr-1e-3",
      "masked_pred_prob-0.5__tasks-cap__ft.lr-1e-3"]
  assert points[3].values == {"loss.masked_pred_prob": 0.5, "tasks": "cap", "then:lr": 0.001}
  assert grid.product([])[0].name == "base"
  spec, overrides = grid.stage_config("c.py:runlocal,res=128", points[1].settings, 0)
  assert (spec, overrides) == ("c.py:runlocal,res=128,tasks=cap", [("loss.masked_pred_prob", "0")])
  assert grid.stage_config("d.py", points[1].settings, 1, {"encoder_init": "W"}) == (
      "d.py:encoder_init=W", [("lr", "1e-3")])


def test_key_typo_fails_before_running_with_a_suggestion(tmp_path, capsys):
  runner = FakeRunner()
  for argv, hint in (
      (["--grid", "model.masked_pred_prob=0,0.5"], "did you mean 'config.loss.masked_pred_prob'"),
      (["--grid", "arg:taks=cap"], "did you mean 'tasks'"),
      (["--grid", "total_steps=ten"], "expected an int"),
      (["--grid", "then:lr=1"], "needs --then")):
    with pytest.raises(SystemExit) as e:
      _tool().main(["--config", PRETRAIN, "--out", str(tmp_path), *argv], runner=runner)
    assert e.value.code == 2
    assert hint in capsys.readouterr().err
  assert not runner.calls and not os.listdir(tmp_path)


def test_runs_resume_and_collect_tables(tmp_path, capsys):
  tool, runner = _tool(), FakeRunner()
  assert tool.main(_argv(tmp_path), runner=runner) == 0
  # 2 points x 2 seeds x (pretrain, fine-tune, evaluate).
  assert len(runner.calls) == 12
  first = tmp_path / "masked_pred_prob-0" / "seed0"
  pre, ft = str(first / "pretrain_locca"), str(first / "diff_vqa")
  assert runner.calls[0][1:] == ["-m", "locvqa_jax.train", "--config", PRETRAIN + ":runlocal",
                                 "--workdir", pre, "--config.seed=0",
                                 "--config.loss.masked_pred_prob=0"]
  assert runner.calls[1][:6] == [runner.calls[1][0], "-m", "locvqa_jax.train", "--config",
                                 f"{DIFF_VQA}:runlocal,encoder_init={pre}", "--workdir"]
  assert runner.calls[2][1:6] == ["-m", "locvqa_jax.evaluate", "--workdir", ft, "--split"]
  out = capsys.readouterr().out
  assert "point 1/2 seed 0 (masked_pred_prob-0): running, 4 of 4 runs left" in out
  assert "point 2/2 seed 1 (masked_pred_prob-0.5): running, 1 of 4 runs left, ETA" in out

  with open(tmp_path / "sweep.csv") as f:
    rows = list(csv.DictReader(f))
  assert [(r["loss.masked_pred_prob"], r["seed"], r["status"]) for r in rows] == [
      ("0", "0", "done"), ("0", "1", "done"), ("0.5", "0", "done"), ("0.5", "1", "done")]
  assert [float(r["pre:val/loss"]) for r in rows] == pytest.approx([0.0, 0.1, 0.5, 0.6])
  assert rows[0]["test:overall.exact_match.closed_accuracy"] == "0.5"
  assert rows[0]["ft:val/missing"] == "" and rows[0]["workdir_ft"] == ft
  table = (tmp_path / "sweep.md").read_text()
  assert "| loss.masked_pred_prob | seeds | pre:val/loss |" in table
  assert "| 0 | 2/2 | 0.05 ± 0.071 | 0.5 ± 0 | n/a |" in table
  assert "| 0.5 | 2/2 | 0.55 ± 0.071 | 0.5 ± 0 | n/a |" in table
  assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"

  runner.calls.clear()
  assert tool.main(_argv(tmp_path), runner=runner) == 0
  assert not runner.calls
  # A deleted point reruns, alone; a deleted marker reruns that stage only.
  for path in sorted((tmp_path / "masked_pred_prob-0.5").rglob("*"), reverse=True):
    path.unlink() if path.is_file() else path.rmdir()
  os.remove(first / "diff_vqa" / "sweep_done.json")
  assert tool.main(_argv(tmp_path), runner=runner) == 0
  ran = [(c[c.index("--workdir") + 1].replace(str(tmp_path) + "/", ""), c[2]) for c in runner.calls]
  assert ran == [("masked_pred_prob-0/seed0/diff_vqa", "locvqa_jax.train"),
                 ("masked_pred_prob-0/seed0/diff_vqa", "locvqa_jax.evaluate")] + [
                     (f"masked_pred_prob-0.5/seed{s}/{stage}", module)
                     for s in (0, 1) for stage, module in (
                         ("pretrain_locca", "locvqa_jax.train"), ("diff_vqa", "locvqa_jax.train"),
                         ("diff_vqa", "locvqa_jax.evaluate"))]


def test_a_failed_stage_stops_its_chain_and_gets_no_marker(tmp_path, capsys):
  runner = FakeRunner(fail_on="masked_pred_prob-0.5/seed0/pretrain_locca")
  assert _tool().main(_argv(tmp_path), runner=runner) == 1
  out = capsys.readouterr().out
  assert "point 2/2 seed 0 (masked_pred_prob-0.5): FAILED (exit 1)" in out
  assert len(runner.calls) == 7  # Point 1's two seeds, then the failing pretraining; stop.
  assert not (tmp_path / "masked_pred_prob-0.5" / "seed0" / "pretrain_locca"
              / "sweep_done.json").exists()
  with open(tmp_path / "sweep.csv") as f:
    assert [r["status"] for r in csv.DictReader(f)] == ["done", "done", "pending", "pending"]
  assert "| 0.5 | 0/2 | n/a | n/a | n/a |" in (tmp_path / "sweep.md").read_text()


def test_print_commands_gives_one_chain_per_unfinished_point(tmp_path, capsys):
  tool = _tool()
  assert tool.main(_argv(tmp_path, "--print-commands"), runner=FakeRunner()) == 0
  lines = capsys.readouterr().out.strip().splitlines()
  assert len(lines) == 2
  chain = lines[1].split(" && ")
  assert chain[0] == f"cd {shlex.quote(REPO)}"
  # Per seed: pretrain, marker, fine-tune, evaluate, marker.
  assert len(chain) == 1 + 2 * 5
  pre = str(tmp_path / "masked_pred_prob-0.5" / "seed1" / "pretrain_locca")
  assert f"--workdir {pre} --config.seed=1 --config.loss.masked_pred_prob=0.5" in chain[6]
  assert f"encoder_init={pre}" in chain[8]
  assert chain[9].endswith("--split test --no_progress")
  assert chain[7].endswith(f"> {pre}/sweep_done.json")
  assert not os.path.exists(tmp_path / "masked_pred_prob-0")  # Nothing ran.
  # After the sweep ran, nothing is left to print.
  tool.main(_argv(tmp_path), runner=FakeRunner())
  capsys.readouterr()
  assert tool.main(_argv(tmp_path, "--print-commands"), runner=FakeRunner()) == 0
  assert capsys.readouterr().out == ""


def test_presets_give_the_paper_ablations():
  mixture = grid.product(presets.axes("task_mixture", with_then=False))
  assert [p.name for p in mixture] == ["tasks-all", "tasks-no_aref", "tasks-no_gcap",
                                       "tasks-no_caref", "tasks-cap_only"]
  assert [p.settings[0].raw for p in mixture] == [
      "cap+aref+gcap+caref", "cap+gcap+caref", "cap+aref+caref", "cap+aref+gcap", "cap"]
  res = grid.product(presets.axes("resolution", with_then=True))
  assert [{s.target: s.raw for s in p.settings} for p in res] == [
      {"arg:res": "224", "then:arg:res": "224"}, {"arg:res": "448", "then:arg:res": "448"}]
  assert all(len(p.settings) == 1 for p in grid.product(presets.axes("resolution", False)))
  ratio = grid.product(presets.axes("parallel_prediction", with_then=False))
  assert [p.values["masked_pred_prob"] for p in ratio] == [0, 0.25, 0.5, 0.75]
  assert ratio[1].settings == (grid.Setting(0, "override", "loss.masked_pred_prob", "0.25"),)
  with pytest.raises(ValueError, match="task_mixture"):
    presets.get("mixture")


def test_preset_combines_with_grid_seeds_and_then(tmp_path):
  runner = FakeRunner()
  argv = ["--preset", "resolution", "--config", PRETRAIN + ":runlocal", "--grid", "lr=1e-3,1e-2",
          "--seeds", "2", "--then", DIFF_VQA + ":runlocal", "--out", str(tmp_path)]
  assert _tool().main(argv, runner=runner) == 0
  trains = [c for c in runner.calls if "locvqa_jax.train" in c]
  assert len(trains) == 2 * 2 * 2 * 2
  assert trains[0][4] == PRETRAIN + ":runlocal,res=224"
  assert trains[1][4].startswith(DIFF_VQA + ":runlocal,res=224,encoder_init=")
  assert sorted(os.listdir(tmp_path)) == ["res-224__lr-1e-2", "res-224__lr-1e-3",
                                          "res-448__lr-1e-2", "res-448__lr-1e-3", "sweep.csv",
                                          "sweep.md", "sweep.png"]
  header = (tmp_path / "sweep.md").read_text().splitlines()[2]
  assert header.startswith("| res | lr | seeds | pre:val/loss | pre:val/cap_cider | test:")


def test_report_reads_final_values_and_summarizes(tmp_path):
  (tmp_path / "metrics.jsonl").write_text('{"step": 1, "val/loss": 3}\n{"step": 2, "val/loss": 2}\n'
                                          '{"step": 2, "val/loss": 1.5, "val/iou": "nan"}\n{"ste')
  values = report.read_metrics({"pre": str(tmp_path)}, ["val/loss", "pre:val/iou", "test:a.b"])
  assert values == {"val/loss": 1.5, "pre:val/iou": None, "test:a.b": None}
  assert report.summarize([1.0, None, 3.0]) == (2, 2.0, pytest.approx(2 ** 0.5))
  assert report.summarize([None]) == (0, None, None)
  with pytest.raises(ValueError, match="stage 'eval'"):
    report.parse_metric("eval:x")


def test_collect_runs_nothing_and_plots_categorical_axes(tmp_path):
  runner = FakeRunner()
  argv = ["--preset", "task_mixture", "--out", str(tmp_path), "--metrics", "pre:val/loss"]
  assert _tool().main(argv + ["--collect"], runner=runner) == 0
  assert not runner.calls and not (tmp_path / "sweep.png").exists()  # Nothing to plot yet.
  with open(tmp_path / "sweep.csv") as f:
    assert [r["tasks"] for r in csv.DictReader(f)] == ["all", "no_aref", "no_gcap", "no_caref",
                                                       "cap_only"]
  assert _tool().main(argv, runner=runner) == 0
  assert runner.calls[4][4] == PRETRAIN + ":tasks=cap"
  assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"
  assert "| cap_only | 1/1 | 0 |" in (tmp_path / "sweep.md").read_text()
