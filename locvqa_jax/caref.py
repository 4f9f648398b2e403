"""CAREF grounding: where a pretraining run's decoder puts a phrase on an image.

The decoder of a location-aware pretraining run (configs/pretrain_locca.py) reads the prefix
`<caref> {phrase}` (the run's own template) and generates 4 location tokens, the box
(ymin, xmin, ymax, xmax) in [0, 1] of the letterboxed frame. `Grounder.locate_pairs` does this
for many (image, phrase) pairs in fixed-size batches with one jitted encode+decode, so a whole
evaluation split compiles once; `python -m locvqa_jax.answer --grounding` and
`python -m locvqa_jax.evaluate --grounding` both use it.

With `constrain_boxes` the 4 generated tokens are the argmax over the location tokens only (the
template puts a box there, so every output is a box); by default it follows the pretraining
run's own validation setting (`evals.*.constrain_boxes`).
"""

from __future__ import annotations

import base64
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from locvqa_jax import decoding

BOS_ID = 2
BOX_TOKENS = 4


def to_model_input(image: np.ndarray) -> np.ndarray:
  """[R, R] uint8 -> [R, R, 1] float32 in [-1, 1] (the range of both training stages)."""
  return (image.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0))[..., None]


def pretrain_workdir_of(config: Any) -> str:
  """The pretraining workdir a difference-VQA run's encoder came from (config.init.encoder)."""
  from locvqa_jax import vqa_init  # pylint: disable=g-import-not-at-top
  spec = vqa_init.parse_encoder_init(config.init.encoder)
  if spec is None or spec.kind != "workdir":
    raise ValueError(f"grounding needs --pretrain_workdir: the run's encoder "
                     f"(config.init.encoder={config.init.encoder!r}) did not come from a "
                     "pretraining workdir")
  return spec.path


def _constrain_default(config: Any) -> bool:
  evals = config.get("evals") or {}
  return any(bool(e.get("constrain_boxes", False)) for e in evals.values()
             if isinstance(e, dict) and e.get("type") == "pretrain")


class Grounder:
  """CAREF with a pretraining run: `locate_pairs(images, phrases) -> boxes [N, 4]`."""

  def __init__(self, workdir: str, step: Optional[int] = None, *,
               constrain_boxes: Optional[bool] = None, batch_size: int = 32):
    from locvqa_jax import checkpointing  # pylint: disable=g-import-not-at-top
    from locvqa_jax import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
    from locvqa_jax.models import cappa  # pylint: disable=g-import-not-at-top
    meta, params = checkpointing.load_params(workdir, step)
    config = meta["config"]
    if config.get("model_name", "cappa") != "cappa" or "decoder" not in params:
      raise ValueError(f"--pretrain_workdir {workdir} is not a pretraining (cappa) run")
    self.workdir, self.step, self.batch_size = workdir, int(meta.get("step", -1)), batch_size
    self.model = cappa.Model(**config["model"])
    self.params = jax.device_put(params)  # once, not with every batch
    self.tok = tokenizer_lib.Tokenizer.from_bytes(base64.b64decode(meta["tokenizer_b64"]))
    self.template = config.get("input", {}).get("templates", {}).get("caref_prefix",
                                                                     "<caref> {phrase}")
    self.res = int(str(config.get("input", {}).get("res", "r128")).lstrip("r"))
    self.constrain_boxes = (_constrain_default(config) if constrain_boxes is None
                            else bool(constrain_boxes))
    # [1, 4, V + 1]: only location ids may be generated (the [MASK] row included in V + 1).
    num_ids = int(config.get("vocab_size") or self.tok.vocab_size) + 1
    allowed = np.zeros((1, BOX_TOKENS, max(num_ids, self.tok.vocab_size + 1)), bool)
    allowed[:, :, np.asarray(self.tok.loc_ids)] = True
    self._allowed = allowed if self.constrain_boxes else None
    self._boxes = jax.jit(self._boxes_fn)

  def settings(self) -> dict[str, Any]:
    """What metrics.json records about the grounding model."""
    return {"pretrain_workdir": self.workdir, "step": self.step, "template": self.template,
            "res": self.res, "constrain_boxes": self.constrain_boxes}

  def _boxes_fn(self, params, images, prefix, prefix_len):
    """images [B, r, r, 1], prefix [B, P], prefix_len [B] -> tokens [B, 4]."""
    encoded = self.model.apply({"params": params}, images, method="encode")
    allowed = None
    if self._allowed is not None:
      allowed = jnp.broadcast_to(jnp.asarray(self._allowed),
                                 (images.shape[0],) + self._allowed.shape[1:])
    return decoding.greedy_decode(self.model, params, encoded, prefix, prefix_len,
                                  max_decode_len=BOX_TOKENS, eos_id=-1, allowed=allowed)

  def _prefixes(self, phrases: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """[N, P] bos + rendered template (P a multiple of 16, so few shapes compile), [N] lengths."""
    from locvqa_jax.data import tasks  # pylint: disable=g-import-not-at-top
    ids = {p: [BOS_ID] + tasks.render(self.template, self.tok, phrase=p) for p in set(phrases)}
    lengths = np.asarray([len(ids[p]) for p in phrases], np.int32)
    width = -(-int(lengths.max(initial=1)) // 16) * 16
    prefix = np.zeros((len(phrases), width), np.int32)
    for i, p in enumerate(phrases):
      prefix[i, :len(ids[p])] = ids[p]
    return prefix, lengths

  def _pixels(self, image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3:
      image = image[..., 0]
    if image.shape != (self.res, self.res):
      image = np.asarray(Image.fromarray(image).resize((self.res, self.res), Image.BILINEAR))
    return to_model_input(image)

  def locate_pairs(self, images: Sequence[np.ndarray], phrases: Sequence[str], *,
                   progress: bool = False) -> np.ndarray:
    """Boxes [N, 4] of phrase i on image i (NaN where the 4 tokens are not a box).

    Args:
      images: [N] letterboxed uint8 [R, R] (or [R, R, 1]) at any R, resized to the pretraining
        resolution; any sequence, read one batch at a time (it may decode lazily).
      phrases: [N] phrases (finding names).
      progress: a progress bar over batches.
    """
    if len(images) != len(phrases):
      raise ValueError(f"locate_pairs: {len(images)} images but {len(phrases)} phrases")
    out = np.full((len(phrases), 4), np.nan, np.float32)
    if not phrases:
      return out
    prefix, lengths = self._prefixes(phrases)
    starts = range(0, len(phrases), self.batch_size)
    if progress:
      import tqdm  # pylint: disable=g-import-not-at-top
      starts = tqdm.tqdm(starts, desc="grounding", unit="batch")
    for start in starts:
      idx = np.arange(start, min(start + self.batch_size, len(phrases)))
      # The last batch is padded with copies of its first row: one shape for the whole run.
      rows = np.concatenate([idx, np.full(self.batch_size - len(idx), idx[0])])
      x = np.stack([self._pixels(images[i]) for i in idx])
      x = np.concatenate([x, np.repeat(x[:1], self.batch_size - len(idx), axis=0)])
      tokens = np.asarray(self._boxes(self.params, jnp.asarray(x), jnp.asarray(prefix[rows]),
                                      jnp.asarray(lengths[rows])))
      for k, i in enumerate(idx):
        box = self.tok.parse_box(tokens[k])
        if box is not None:
          out[i] = box
    return out

  def locate(self, images: Sequence[np.ndarray], phrases: Sequence[str]) -> np.ndarray:
    """Boxes [len(images), len(phrases), 4] of every phrase on every image (NaN: no box)."""
    pairs = [(i, j) for i in range(len(images)) for j in range(len(phrases))]
    boxes = self.locate_pairs([images[i] for i, _ in pairs], [phrases[j] for _, j in pairs])
    return boxes.reshape(len(images), len(phrases), 4)
