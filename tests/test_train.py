"""The trainer on the tiny fixture: sharded step, resume after SIGTERM, NaN stop, CLI errors."""

import json
import os

import jax
import numpy as np
import pytest

import trainer_fixture as fx
from locvqa_jax import checkpointing
from locvqa_jax import sharding
from locvqa_jax import train


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
  """An uninterrupted 6-step run shared by the tests of this module."""
  workdir = str(tmp_path_factory.mktemp("full"))
  out = train.train_and_evaluate(fx.make_config(), workdir)
  return workdir, out


def _one_step(config, devices):
  mesh = sharding.make_mesh(config.mesh, devices=devices)
  batch = fx._batch(np.random.default_rng(0), config.input.batch_size)
  trainer = train.build_trainer(config, mesh, batch)
  state = trainer.init_state(jax.random.PRNGKey(0))
  state, metrics = trainer.update_step(state, sharding.make_global_batch(batch, mesh))
  return jax.device_get(state["params"]), jax.device_get(metrics)


def test_fsdp_on_8_devices_matches_one_device():
  config8 = fx.make_config(mesh=[("data", 2), ("fsdp", 4)])
  config1 = fx.make_config(mesh=[("data", 1), ("fsdp", 1)])
  params8, metrics8 = _one_step(config8, jax.devices())
  params1, metrics1 = _one_step(config1, jax.devices()[:1])
  np.testing.assert_allclose(metrics8["train/loss"], metrics1["train/loss"], rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               params8, params1)


def test_gradient_accumulation_matches_one_big_step():
  devices = jax.devices()[:2]
  one = fx.make_config(mesh=[("data", 2), ("fsdp", 1)], **{"loss.masked_pred_prob": 0.0})
  two = fx.make_config(mesh=[("data", 2), ("fsdp", 1)], grad_accum_steps=2,
                       **{"loss.masked_pred_prob": 0.0})
  params1, metrics1 = _one_step(one, devices)
  params2, metrics2 = _one_step(two, devices)
  np.testing.assert_allclose(metrics2["train/loss"], metrics1["train/loss"], rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               params2, params1)


def test_params_are_sharded_over_fsdp():
  config = fx.make_config(mesh=[("data", 2), ("fsdp", 4)])
  mesh = sharding.make_mesh(config.mesh)
  trainer = train.build_trainer(config, mesh, fx._batch(np.random.default_rng(0), 8))
  specs = jax.tree.map(lambda s: tuple(s.spec), trainer.state_shardings["params"])
  assert specs["decoder"]["head"]["kernel"] == ("fsdp", None)  # [16, 33]: only 16 splits by 4.
  opt_specs = [tuple(s.spec) for s in jax.tree.leaves(trainer.state_shardings["opt"])]
  assert ("fsdp", None) in opt_specs  # Adam moments follow the parameter rules.


def test_training_writes_metrics_checkpoints_and_curves(full_run):
  workdir, out = full_run
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [r["step"] for r in rows] == [2, 4, 6]
  assert {"train/loss", "train/lr", "train/loss_cap", "train/loss_caref"} <= set(rows[-1])
  assert sorted(checkpointing.Checkpointer(workdir).all_steps()) == [3, 6]
  assert os.path.exists(os.path.join(workdir, "training_curves.png"))
  assert os.listdir(os.path.join(workdir, "tb"))


def test_killed_run_resumes_to_the_same_parameters(full_run, tmp_path):
  full_dir, _ = full_run
  workdir = str(tmp_path)
  out = train.train_and_evaluate(fx.make_config(**{"input.sigterm_at_batch": 5}), workdir)
  assert out["preempted_at"] == 5
  assert checkpointing.Checkpointer(workdir).latest_step() == 5
  train.train_and_evaluate(fx.make_config(), workdir)
  _, resumed = checkpointing.load_params(workdir)
  _, uninterrupted = checkpointing.load_params(full_dir)
  jax.tree.map(np.testing.assert_array_equal, resumed, uninterrupted)


def test_nan_loss_stops_naming_the_step_and_keeps_last_good(tmp_path):
  config = fx.make_config(**{"input.nan_at_batch": 5})
  with pytest.raises(train.NonFiniteLossError,
                     match=r"training loss is nan at step 5.*last good checkpoint is step 3"):
    train.train_and_evaluate(config, str(tmp_path))
  assert checkpointing.Checkpointer(str(tmp_path)).all_steps() == [3]


def test_cli_rejects_unknown_key_with_suggestion(tmp_path, capsys):
  config_file = tmp_path / "c.py"
  config_file.write_text("import trainer_fixture\n"
                         "def get_config(arg=None):\n"
                         "  c = trainer_fixture.make_config()\n"
                         "  c.unlock()\n"
                         "  return c\n")
  with pytest.raises(SystemExit) as e:
    train.main(["--config", str(config_file), "--workdir", str(tmp_path / "w"),
                "--config.total_step=3"])
  assert e.value.code == 2
  assert "unknown config key 'config.total_step' -- did you mean 'config.total_steps'?" in (
      capsys.readouterr().err)
  assert not os.path.exists(tmp_path / "w")


@pytest.mark.slow
def test_two_processes_agree_on_a_step():
  """tools/multihost_check.py: 2 jax.distributed CPU processes vs one process (minutes)."""
  import subprocess
  import sys
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run([sys.executable, os.path.join(repo, "tools", "multihost_check.py")],
                       capture_output=True, text=True, timeout=900, cwd=repo)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  lines = out.stdout.splitlines()
  assert lines[-1] == "agree"
  rows = [l.split() for l in lines if l.startswith(("process", "reference"))]
  # From the right: sum, loss, the mesh dict (4 words), local devices, then global devices.
  assert len(rows) == 3 and all(r[-8] == "4" for r in rows)


def _cappa_batch(config, n, seed=0):
  """Random CONTRACTS D batch with the shapes of configs/pretrain_locca.py."""
  rng = np.random.default_rng(seed)
  res, length = int(config.input.res[1:]), config.input.text_len
  text = rng.integers(4, config.vocab_size, size=(n, length)).astype(np.int32)
  text[:, 0], text[:, -1] = 2, 1
  mask_ar = np.zeros_like(text)
  mask_ar[:, 2:] = 1
  return {"image": rng.uniform(-1, 1, (n, res, res, 1)).astype(np.float32), "text": text,
          "mask_ar": mask_ar, "mask_loss": mask_ar.copy(),
          "task_id": rng.integers(0, 4, n).astype(np.int32),
          "box": rng.uniform(0, 1, (n, 4)).astype(np.float32),
          "region_id": rng.integers(-1, 36, n).astype(np.int32)}


@pytest.mark.slow
def test_cappa_micro_fsdp_step_matches_one_device():
  """The real CapPa micro model of configs/pretrain_locca.py, sharded over 8 devices."""
  from locvqa_jax import config as config_lib
  results = []
  for mesh, devices in (("[('data', 2), ('fsdp', 4)]", jax.devices()),
                        ("[('data', 1), ('fsdp', 1)]", jax.devices()[:1])):
    config = config_lib.load_config("configs/pretrain_locca.py:runlocal",
                                    [("mesh", mesh), ("input.text_len", "32")])
    with config.unlocked():
      config.vocab_size = 1100
      config.model.decoder.max_len = 32
    m = sharding.make_mesh(config.mesh, devices=devices)
    batch = _cappa_batch(config, 8)
    trainer = train.build_trainer(config, m, batch)
    state = trainer.init_state(jax.random.PRNGKey(0))
    state, metrics = trainer.update_step(state, sharding.make_global_batch(batch, m))
    results.append((jax.device_get(state["params"]), float(metrics["train/loss"])))
  (p8, l8), (p1, l1) = results
  np.testing.assert_allclose(l8, l1, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5), p8, p1)


@pytest.mark.slow
def test_pretraining_end_to_end_on_synthetic_data(tmp_path):
  """Synthetic raw files -> TFDS builds -> tokenizer -> 60 CLI training steps (minutes)."""
  import subprocess
  import sys
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  raw, tfds_dir, workdir = tmp_path / "raw", tmp_path / "tfds", tmp_path / "w"
  commands = [["-m", "locvqa_jax.data.synthetic", "--out", str(raw), "--patients", "24",
               "--seed", "0", "--image-size", "160"]]
  commands += [["-m", "tfds_builders.build", name, f"--manual_dir={raw}", "--config=r128",
                f"--data_dir={tfds_dir}"]
               for name in ("mimic_cxr", "chest_imagenome", "mimic_diff_vqa")]
  commands += [["-m", "locvqa_jax.tokenizer", "--data_dir", str(tfds_dir), "--config", "r128",
                "--out", str(tfds_dir / "tokenizer.model")]]
  commands += [["-m", "locvqa_jax.train", "--config",
                f"configs/pretrain_locca.py:runlocal,data_dir={tfds_dir}",
                "--workdir", str(workdir), "--config.total_steps=60",
                "--config.evals.val.every_steps=60", "--config.log_every_steps=10"]]
  for cmd in commands:
    out = subprocess.run([sys.executable] + cmd, cwd=repo, capture_output=True, text=True,
                         timeout=1200)
    assert out.returncode == 0, " ".join(cmd) + "\n" + out.stdout[-2000:] + out.stderr[-3000:]
  rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  losses = [r["train/loss"] for r in rows if "train/loss" in r]
  assert losses[-1] < losses[0] - 0.5
  final = [r for r in rows if "val/loss" in r][-1]
  for task in ("cap", "aref", "gcap", "caref"):
    assert np.isfinite(final[f"val/loss_{task}"])
  assert 0.0 < final["val/caref_baseline_iou"] <= 1.0
  assert {"val/caref_iou", "val/aref_acc50", "val/gcap_bleu4", "val/cap_cider"} <= set(final)
  assert (workdir / "samples_60.txt").exists()
  encoder_config, encoder_params = checkpointing.load_encoder(str(workdir))
  assert encoder_config.variant == "micro" and "embedding" in encoder_params


def test_best_checkpoint_is_chosen_on_validation(tmp_path):
  evals = {"val": dict(type="pretrain", split="validation", every_steps=3, batch_size=8,
                       max_batches=0, decode=False, max_decode_len=5, baseline_batches=1,
                       num_samples=0)}
  config = fx.make_config(evals=evals, best=dict(metric="val/loss", mode="min"))
  train.train_and_evaluate(config, str(tmp_path))
  rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  evals_by_step = {r["step"]: r["val/loss"] for r in rows if "val/loss" in r}
  assert sorted(evals_by_step) == [3, 6]
  best_step = min(evals_by_step, key=evals_by_step.get)
  best = checkpointing.Checkpointer(str(tmp_path), best=True)
  assert best.all_steps() == [best_step]
  test_split = fx.make_config(evals={"t": dict(evals["val"], split="test")},
                              best=dict(metric="t/loss", mode="min"))
  with pytest.raises(ValueError, match="reads split 'test'; the best checkpoint is chosen on"):
    train.train_and_evaluate(test_split, str(tmp_path / "t"))
