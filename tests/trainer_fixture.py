"""The one tiny fixture of the trainer tests: a model, an input pipeline and a config.

Referred to by dotted name from the config (`model_name='trainer_fixture'`,
`input.pipeline='trainer_fixture'`), exactly as the trainer looks up the real ones. Batches follow
CONTRACTS D with random but deterministic content, so every run of a config sees the same data.
"""

from __future__ import annotations

import os
import signal

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

VOCAB = 32
RES = 8
LEN = 8
TASKS = ("cap", "aref", "gcap", "caref")


class _Encoder(nn.Module):
  width: int

  @nn.compact
  def __call__(self, image):  # [B, R, R, 1] -> [B, N, D]
    x = nn.Conv(self.width, (4, 4), strides=(4, 4), name="embedding")(image)
    x = x.reshape(x.shape[0], -1, self.width)
    return nn.Dense(self.width, name="head")(nn.gelu(x))


class _Decoder(nn.Module):
  width: int
  vocab_size: int

  @nn.compact
  def __call__(self, encoded, text, mask_ar):
    emb = nn.Embed(self.vocab_size + 1, self.width, name="embedder")(text)
    # Causal running mean over the prefix-LM: enough to give each position its own context.
    counts = jnp.arange(1, text.shape[1] + 1, dtype=jnp.float32)[None, :, None]
    ctx = jnp.cumsum(emb, axis=1) / counts
    x = ctx + encoded.mean(axis=1, keepdims=True) + 0.0 * mask_ar[..., None]
    x = nn.gelu(nn.Dense(self.width, name="mlp")(x))
    return nn.Dense(self.vocab_size + 1, name="head")(x)


class Model(nn.Module):
  """Tiny stand-in with the cappa interface: params['encoder'], params['decoder']."""
  vocab_size: int = VOCAB
  width: int = 16
  encoder: dict | None = None

  def setup(self):
    self.enc = _Encoder(self.encoder["width"], name="encoder")
    self.dec = _Decoder(self.width, self.vocab_size, name="decoder")

  def __call__(self, image, text, mask_ar, *, train=False, mask_tokens=None):
    del train, mask_tokens
    return self.dec(self.enc(image), text, mask_ar), {}


def parallel_prediction_inputs(rng, text, mask_ar, mask_loss, *, mask_id, masked_pred_prob,
                               masking_ratio):
  """Masks every suffix input of a random subset of examples (CapPa); returns [B, L-1] arrays."""
  del masking_ratio
  pick = jax.random.bernoulli(rng, masked_pred_prob, (text.shape[0], 1))
  text_in = jnp.where(pick & (mask_ar > 0), mask_id, text)[:, :-1]
  return text_in, jnp.where(pick, 0, mask_ar)[:, :-1], mask_loss[:, 1:].astype(jnp.float32)


class _Tokenizer:
  vocab_size = VOCAB
  loc_ids = list(range(16, 32))  # 16 location bins.

  def decode(self, ids):
    return " ".join(f"w{i}" for i in ids)

  def to_bytes(self) -> bytes:
    return b"tiny-tokenizer-model"


def _batch(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
  text = rng.integers(4, VOCAB, size=(n, LEN)).astype(np.int32)
  text[:, 0] = 2
  text[:, -1] = 1
  mask_ar = np.zeros((n, LEN), np.int32)
  mask_ar[:, 3:] = 1
  task = rng.integers(0, len(TASKS), size=(n,)).astype(np.int32)
  # A learnable signal: the first suffix token is a function of the mean image intensity.
  image = rng.uniform(-1, 1, size=(n, RES, RES, 1)).astype(np.float32)
  text[:, 3] = 4 + (image.mean(axis=(1, 2, 3)) > 0).astype(np.int32)
  return {"image": image, "text": text, "mask_ar": mask_ar, "mask_loss": mask_ar.copy(),
          "task_id": task, "box": rng.uniform(0, 1, size=(n, 4)).astype(np.float32),
          "region_id": rng.integers(-1, 36, size=(n,)).astype(np.int32)}


class _Iterator:
  """Deterministic batch stream with grain's get_state/set_state."""

  def __init__(self, input_config, batch_size, seed, process_index):
    self.cfg, self.batch_size = input_config, batch_size
    self.seed, self.process_index, self.index = seed, process_index, 0

  def __iter__(self):
    return self

  def __next__(self):
    self.index += 1
    if self.cfg.sigterm_at_batch and self.index == self.cfg.sigterm_at_batch:
      os.kill(os.getpid(), signal.SIGTERM)
    rng = np.random.default_rng((self.seed, self.process_index, self.index))
    batch = _batch(rng, self.batch_size)
    if self.cfg.nan_at_batch and self.index == self.cfg.nan_at_batch:
      batch["image"][:] = np.nan
    return batch

  def get_state(self):
    return {"index": self.index}

  def set_state(self, state):
    self.index = state["index"]


def build_tokenizer(config):
  del config
  return _Tokenizer()


def train_iterator(config, tokenizer, *, global_batch_size, seed):
  del tokenizer
  return _Iterator(config.input, global_batch_size // jax.process_count(), seed,
                   jax.process_index())


def eval_batches(config, tokenizer, *, split, global_batch_size):
  del config, tokenizer
  rng = np.random.default_rng((99, jax.process_index(), len(split)))
  batches = [_batch(rng, global_batch_size // jax.process_count()) for _ in range(2)]
  for b in batches:
    b["valid"] = np.ones(b["task_id"].shape, np.int32)
  batches[-1]["valid"][-3:] = 0
  return batches


def make_config(**overrides) -> ml_collections.ConfigDict:
  """A full trainer config around the tiny model; keyword overrides use dotted keys ('input.x')."""
  c = ml_collections.ConfigDict()
  c.vocab_size = ml_collections.FieldReference(VOCAB, field_type=int)
  c.tokenizer = ""
  c.model_name = "trainer_fixture"
  c.model = dict(width=16, encoder=dict(width=16))
  c.model.vocab_size = c.get_ref("vocab_size")
  c.input = dict(pipeline="trainer_fixture", batch_size=8, sigterm_at_batch=0, nan_at_batch=0)
  c.loss = dict(name="captioning", masked_pred_prob=0.25, masking_ratio=1.0,
                num_tasks=len(TASKS), task_names=TASKS)
  c.evals = {}
  c.best = dict(metric="", mode="min")
  c.seed = 0
  c.total_steps = 6
  c.log_every_steps = 2
  c.ckpt_every_steps = 3
  c.keep_ckpts = 3
  c.mesh = [("data", -1), ("fsdp", 1)]
  c.sharding_rules = [(".*", "fsdp")]
  c.lr = 3e-3
  c.wd = 1e-2
  c.wd_mask = (".*/kernel",)
  c.optax = dict(b1=0.9, b2=0.95, eps=1e-8)
  c.schedule = dict(warmup_steps=2, decay_type="cosine", end_lr_ratio=0.0)
  c.grad_clip_norm = 1.0
  c.frozen = ()
  c.lr_mults = ()
  c.grad_accum_steps = 1
  c.distributed = dict(enabled=False)
  for key, value in overrides.items():
    node = c
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  c.lock()
  return c
