"""Checkpoint contents: meta, iterator state encoding, and load_encoder."""

import base64

import jax
import numpy as np
import pytest

import trainer_fixture as fx
from locvqa_jax import checkpointing
from locvqa_jax import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("ckpt"))
  out = train.train_and_evaluate(fx.make_config(**{"total_steps": 3}), workdir)
  return workdir, jax.device_get(out["state"]["params"])


def test_meta_holds_config_tokenizer_versions_and_revision(run):
  workdir, _ = run
  meta = checkpointing.load_meta(workdir)
  assert meta["step"] == 3
  assert meta["config"]["model_name"] == "trainer_fixture"
  assert meta["config"]["lr"] == pytest.approx(3e-3)
  assert base64.b64decode(meta["tokenizer_b64"]) == b"tiny-tokenizer-model"
  assert checkpointing.load_tokenizer_bytes(workdir) == b"tiny-tokenizer-model"
  assert set(meta["versions"]) >= {"jax", "flax", "optax", "orbax-checkpoint", "grain"}
  assert meta["versions"]["jax"] == jax.__version__
  assert meta["git_revision"] == "unknown" or len(meta["git_revision"].split("-")[0]) == 40


def test_load_encoder_returns_the_saved_encoder(run):
  workdir, params = run
  enc_config, enc_params = checkpointing.load_encoder(workdir)
  assert enc_config is not None
  jax.tree.map(np.testing.assert_array_equal, enc_params, params["encoder"])
  _, by_step = checkpointing.load_encoder(workdir, step=3)
  jax.tree.map(np.testing.assert_array_equal, by_step, params["encoder"])


def test_load_encoder_errors_name_the_directory(tmp_path, run):
  with pytest.raises(FileNotFoundError, match="no checkpoints in .*checkpoints"):
    checkpointing.load_encoder(str(tmp_path))
  with pytest.raises(FileNotFoundError, match="no checkpoint for step 7 .* have \\[3\\]"):
    checkpointing.load_encoder(run[0], step=7)


@pytest.mark.parametrize("state", [b"\x00grain-bytes\xff", {"index": 4, "epoch": [1, 2]}])
def test_iterator_state_round_trip(state):
  assert checkpointing.decode_iter_state(checkpointing.encode_iter_state(state)) == state


def test_iterator_states_are_packed_per_process():
  blob = checkpointing.pack_iter_states(b"state-of-process-0")
  assert len(blob["per_process"]) == 1
  assert checkpointing.unpack_iter_state(blob) == b"state-of-process-0"
  with pytest.raises(ValueError, match="iterators of 2 processes; this run has 1"):
    checkpointing.unpack_iter_state({"per_process": [blob["per_process"][0]] * 2})
