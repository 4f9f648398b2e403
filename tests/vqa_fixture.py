"""Tiny difference-VQA world for the stage-2 tests: records, tokenizer, a pretraining workdir.

`input.pipeline='vqa_fixture'` makes the trainer read these in-memory mimic_diff_vqa-shaped records
through the real input source (locvqa_jax/vqa_source.py), exactly as it reads the built dataset.
The answer to "what has changed?" depends on whether the main image is brighter than the
reference, so a model that sees the images can beat the blind one.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from locvqa_jax import checkpointing
from locvqa_jax import config as config_lib
from locvqa_jax import tokenizer as tokenizer_lib
from locvqa_jax import vqa_source
from locvqa_jax.models import cappa

RES = 32
ADDED = "the main image has an additional finding of edema than the reference image. "
NOTHING = "nothing has changed."
CORPUS = ["what has changed compared to the reference image?", "is there edema?", "yes", "no",
          ADDED, NOTHING, "the main image is missing the finding of edema than the reference image."]


def _image(value: int) -> np.ndarray:
  return np.full((RES, RES, 1), value, np.uint8)


@functools.lru_cache(maxsize=None)
def records(split: str, n: int = 12) -> list[dict]:
  """mimic_diff_vqa records: pair i has main brighter than reference when i is even."""
  offset = {"train": 0, "validation": 1000, "test": 2000}[split]
  out = []
  for i in range(n):
    k = offset + i
    changed = i % 2 == 0
    out.append({
        "main_image": _image(200 if changed else 60), "ref_image": _image(60 + i % 3),
        "study_id": str(7000 + k).encode(), "ref_id": str(8000 + k).encode(),
        "subject_id": b"10000001", "main_dicom_id": f"m{k}".encode(),
        "ref_dicom_id": f"r{k}".encode(),
        "questions": {
            "question": [CORPUS[0].encode(), CORPUS[1].encode()],
            "answer": [(ADDED if changed else NOTHING).encode(),
                       (b"yes" if changed else b"no")],
            "question_type": [b"difference", b"presence"],
            "row_index": [np.int64(2 * k), np.int64(2 * k + 1)]}})
  return out


@functools.lru_cache(maxsize=None)
def tokenizer() -> tokenizer_lib.Tokenizer:
  return tokenizer_lib.train_tokenizer(CORPUS * 20, vocab_size=2000)


def build_tokenizer(config):
  del config
  return tokenizer()


def open_records(config, split):
  del config
  return records(split)


def train_iterator(config, tok, *, global_batch_size, seed):
  return vqa_source.maybe_trim(config, iter(vqa_source.loader(
      config, tok, split="train", global_batch_size=global_batch_size, train=True, seed=seed,
      records=records("train"))))


def eval_batches(config, tok, *, split, global_batch_size):
  return vqa_source.maybe_trim(config, vqa_source.loader(
      config, tok, split=split, global_batch_size=global_batch_size, train=False,
      records=records(split)))


def make_pretrain_workdir(workdir: str, step: int = 5) -> dict:
  """A pretraining checkpoint (micro CapPa at RES, random weights) as the trainer writes it."""
  tok = tokenizer()
  c = ml_collections.ConfigDict()
  c.model = dict(preset=None, encoder=dict(variant="micro", pool_type="none", posemb="learn"),
                 decoder=dict(vocab_size=tok.vocab_size, num_layers=2, emb_dim=64, mlp_dim=128,
                              num_heads=2, max_len=64))
  c.tokenizer = ""
  c.input = dict(res=f"r{RES}")
  model = cappa.Model(**c.model.to_dict())
  image = jnp.zeros((1, RES, RES, 1))
  text = jnp.zeros((1, 4), jnp.int32)
  params = jax.jit(model.init)(jax.random.PRNGKey(3), image, text, text)["params"]
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(4), len(leaves))
  params = jax.tree.unflatten(tree, [x + 0.1 * jax.random.normal(k, x.shape)
                                     for x, k in zip(leaves, keys)])
  ckpt = checkpointing.Checkpointer(workdir, async_save=False)
  state = {"params": params, "step": jnp.int32(step)}
  ckpt.save(step, state, {"index": 0}, checkpointing.make_meta(c, tok.to_bytes(), step))
  ckpt.wait()
  ckpt.close()
  return jax.device_get(params)


def make_config(encoder_init: str, features_dir: str, arg: str = "", **overrides):
  """configs/diff_vqa.py for the fixture: tiny sizes, in-memory records, a few steps."""
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  spec = f"{os.path.join(repo, 'configs', 'diff_vqa.py')}:encoder_init={encoder_init},res={RES}"
  c = config_lib.load_config_file(spec + ("," + arg if arg else ""))
  c.input.pipeline = "vqa_fixture"
  c.input.batch_size = 8
  c.input.features.dir = features_dir
  c.input.index_cache_dir = ""
  c.input.augment.enabled = False
  c.total_steps = 3
  c.log_every_steps = 1
  c.ckpt_every_steps = 3
  c.schedule.warmup_steps = 1
  c.lr = 1e-2
  c.evals.val.update(every_steps=0, batch_size=8, max_batches=2, decode_batches=1,
                     max_decode_len=24)
  for key, value in overrides.items():
    node = c
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  c.lock()
  return c


def make_vqa_workdir(workdir: str, pretrain_workdir: str, arg: str = "") -> None:
  """An untrained difference-VQA run (step 0) saved as the trainer saves it."""
  from locvqa_jax import vqa_init  # pylint: disable=g-import-not-at-top
  from locvqa_jax.models import diff_vqa  # pylint: disable=g-import-not-at-top
  tok = tokenizer()
  # The image_norm statistics read the cached training features when the config caches them.
  c = make_config(pretrain_workdir, workdir + "_features", arg, vocab_size=tok.vocab_size)
  model = diff_vqa.Model(**c.model.to_dict())
  images = jnp.zeros((1, 2, RES, RES, 1))
  text = jnp.zeros((1, 4), jnp.int32)
  params = vqa_init.load_pretrained(model.init(jax.random.PRNGKey(0), images, text, text)["params"],
                                    c)
  ckpt = checkpointing.Checkpointer(workdir, async_save=False)
  ckpt.save(0, {"params": params, "step": jnp.int32(0)}, {"index": 0},
            checkpointing.make_meta(c, tok.to_bytes(), 0))
  ckpt.wait()
  ckpt.close()
