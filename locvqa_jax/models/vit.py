"""Vision Transformer with big_vision's parameter names and semantics.

The parameter tree is the one big_vision's `models/vit.py` writes, so big_vision
ViT and SigLIP image-tower npz checkpoints load with a strict merge
(locvqa_jax/models/npz.py):

  embedding/{kernel [p, p, C, D], bias [D]}
  pos_embedding [1, h*w, D]                        (posemb='learn' only)
  cls [1, 1, D]                                    (pool_type='tok' only)
  Transformer/encoderblock_{i}/LayerNorm_0, MultiHeadDotProductAttention_0/
      {query,key,value,out}, LayerNorm_1, MlpBlock_0/{Dense_0,Dense_1}
  Transformer/encoderblock/...  the same with a leading depth axis (scan=True)
  Transformer/encoder_norm
  MAPHead_0/{probe, MultiHeadDotProductAttention_0, LayerNorm_0, MlpBlock_0}
  pre_logits (rep_size), head (num_classes)
"""

from __future__ import annotations

import math
import re
from typing import Any, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# Named sizes: big_vision's table (arXiv 2106.04560, Table 2, plus SigLIP's So400m) and
# this project's CPU smoke size `micro`.
_VARIANTS = {
    #          width depth  mlp  heads
    "micro": (64, 2, 128, 2),
    "mu": (32, 1, 128, 2),
    "Ti": (192, 12, 768, 3),
    "S": (384, 12, 1536, 6),
    "M": (512, 12, 2048, 8),
    "B": (768, 12, 3072, 12),
    "L": (1024, 24, 4096, 16),
    "So400m": (1152, 27, 4304, 16),
    "H": (1280, 32, 5120, 16),
    "g": (1408, 40, 6144, 16),
    "G": (1664, 48, 8192, 16),
}
_DEFAULT_PATCH = {"micro": 16}
_EXPLICIT = re.compile(r"^w(\d+)-d(\d+)-m(\d+)-h(\d+)$")


def decode_variant(variant: Optional[str]) -> dict[str, Any]:
  """Turns 'B/16', 'So400m/14', 'micro' or 'w256-d4-m1024-h4/16' into Model fields.

  Returns a dict with width, depth, mlp_dim, num_heads and, when a patch size is
  given (or the variant has a default one), patch_size as a pair. None gives {}.
  """
  if variant is None:
    return {}
  name, _, patch = variant.partition("/")
  match = _EXPLICIT.match(name)
  if match:
    width, depth, mlp_dim, heads = (int(g) for g in match.groups())
  elif name in _VARIANTS:
    width, depth, mlp_dim, heads = _VARIANTS[name]
  else:
    raise ValueError(
        f"Unknown ViT variant {variant!r}: expected one of {sorted(_VARIANTS)} or "
        "'w<width>-d<depth>-m<mlp>-h<heads>', optionally followed by '/<patch>'.")
  out = dict(width=width, depth=depth, mlp_dim=mlp_dim, num_heads=heads)
  if patch:
    out["patch_size"] = (int(patch), int(patch))
  elif name in _DEFAULT_PATCH:
    out["patch_size"] = (_DEFAULT_PATCH[name],) * 2
  return out


def posemb_sincos_2d(h: int, w: int, width: int, temperature: float = 10_000.,
                     dtype=jnp.float32) -> jax.Array:
  """Fixed 2D sin-cos position embedding (MoCo v3 layout): [1, h*w, width]."""
  if width % 4:
    raise ValueError(f"sincos2d position embedding needs width % 4 == 0, got {width}.")
  y, x = jnp.mgrid[:h, :w]
  omega = jnp.arange(width // 4) / (width // 4 - 1)
  omega = 1. / (temperature**omega)
  y = jnp.einsum("m,d->md", y.flatten(), omega)
  x = jnp.einsum("m,d->md", x.flatten(), omega)
  pe = jnp.concatenate([jnp.sin(x), jnp.cos(x), jnp.sin(y), jnp.cos(y)], axis=1)
  return jnp.asarray(pe, dtype)[None, :, :]


def resample_posemb(old: np.ndarray, new_shape: Sequence[int],
                    new_grid: Optional[tuple[int, int]] = None,
                    old_grid: Optional[tuple[int, int]] = None) -> np.ndarray:
  """Bilinearly resizes a learned position embedding to another patch grid.

  Args:
    old: [1, h*w, D] embedding from a checkpoint.
    new_shape: target shape [1, h'*w', D].
    new_grid, old_grid: (h, w) grids; square grids are inferred when omitted.

  Returns:
    [1, h'*w', D] float32; `old` unchanged when the shapes already agree.
  """
  old = np.asarray(old)
  if tuple(old.shape) == tuple(new_shape):
    return old
  if old.shape[-1] != new_shape[-1]:
    raise ValueError(f"pos_embedding width differs: checkpoint {old.shape}, model {new_shape}.")

  def grid(n, given):
    if given is not None:
      return tuple(given)
    side = math.isqrt(n)
    if side * side != n:
      raise ValueError(f"pos_embedding with {n} positions is not a square grid; pass the grid.")
    return side, side

  gh, gw = grid(old.shape[1], old_grid)
  nh, nw = grid(new_shape[1], new_grid)
  resized = jax.image.resize(
      jnp.asarray(old.reshape(gh, gw, -1), jnp.float32), (nh, nw, old.shape[-1]),
      method="linear", antialias=False)
  return np.asarray(resized).reshape(1, nh * nw, -1).astype(old.dtype)


class MlpBlock(nn.Module):
  """Transformer feed-forward block: Dense_0 -> GELU -> dropout -> Dense_1."""
  mlp_dim: Optional[int] = None
  dropout: float = 0.0
  dtype_mm: str = "float32"

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
    inits = dict(kernel_init=nn.initializers.xavier_uniform(),
                 bias_init=nn.initializers.normal(stddev=1e-6))
    d = x.shape[-1]
    x = nn.Dense(self.mlp_dim or 4 * d, dtype=self.dtype_mm, **inits)(x)
    x = nn.gelu(x)
    x = nn.Dropout(rate=self.dropout)(x, deterministic)
    return nn.Dense(d, dtype=self.dtype_mm, **inits)(x)


class Encoder1DBlock(nn.Module):
  """Pre-LN encoder block: x + MHSA(LN(x)), then x + MLP(LN(x))."""
  mlp_dim: Optional[int] = None
  num_heads: int = 12
  dropout: float = 0.0
  dtype_mm: str = "float32"

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool = True):
    y = nn.LayerNorm()(x)
    y = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, kernel_init=nn.initializers.xavier_uniform(),
        deterministic=deterministic, dtype=self.dtype_mm)(y, y)
    x = x + nn.Dropout(rate=self.dropout)(y, deterministic)
    y = nn.LayerNorm()(x)
    y = MlpBlock(mlp_dim=self.mlp_dim, dropout=self.dropout, dtype_mm=self.dtype_mm)(
        y, deterministic)
    x = x + nn.Dropout(rate=self.dropout)(y, deterministic)
    return x, None


class Encoder(nn.Module):
  """Stack of encoder blocks and the final `encoder_norm`; python loop or nn.scan."""
  depth: int
  mlp_dim: Optional[int] = None
  num_heads: int = 12
  dropout: float = 0.0
  scan: bool = False
  remat_policy: str = "none"
  dtype_mm: str = "float32"

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool = True):
    block_cls = Encoder1DBlock
    if self.remat_policy != "none":
      policy = getattr(jax.checkpoint_policies, self.remat_policy, None)
      if policy is None:
        raise ValueError(f"Unknown remat_policy {self.remat_policy!r}: use 'none' or a name "
                         "from jax.checkpoint_policies (e.g. 'nothing_saveable').")
      block_cls = nn.remat(block_cls, prevent_cse=not self.scan, static_argnums=(2,),
                           policy=policy)
    kw = dict(mlp_dim=self.mlp_dim, num_heads=self.num_heads, dropout=self.dropout,
              dtype_mm=self.dtype_mm)
    if self.scan:
      x, _ = nn.scan(block_cls, variable_axes={"params": 0},
                     split_rngs={"params": True, "dropout": True},
                     in_axes=nn.broadcast, length=self.depth)(
                         name="encoderblock", **kw)(x, deterministic)
    else:
      for i in range(self.depth):
        x, _ = block_cls(name=f"encoderblock_{i}", **kw)(x, deterministic)
    return nn.LayerNorm(name="encoder_norm")(x)


class MAPHead(nn.Module):
  """Multihead attention pooling: one learned probe attends over all tokens."""
  mlp_dim: Optional[int] = None
  num_heads: int = 12

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    n, _, d = x.shape
    probe = self.param("probe", nn.initializers.xavier_uniform(), (1, 1, d), x.dtype)
    probe = jnp.tile(probe, [n, 1, 1])
    x = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, kernel_init=nn.initializers.xavier_uniform())(probe, x)
    y = nn.LayerNorm()(x)
    x = x + MlpBlock(mlp_dim=self.mlp_dim)(y)
    return x[:, 0]


class Model(nn.Module):
  """ViT image encoder.

  Fields follow big_vision; `variant` (e.g. 'So400m/14', 'micro') fills width, depth,
  mlp_dim, num_heads and patch_size, and explicit fields given beside it win.
  `channels=3` repeats a 1-channel image to RGB so an RGB checkpoint's stem applies
  unchanged; None keeps the input's channels (the stem then has that many).
  """
  num_classes: Optional[int] = None
  variant: Optional[str] = None
  patch_size: Optional[Sequence[int]] = None
  width: Optional[int] = None
  depth: Optional[int] = None
  mlp_dim: Optional[int] = None
  num_heads: Optional[int] = None
  posemb: str = "learn"
  rep_size: Union[int, bool] = False
  dropout: float = 0.0
  pool_type: str = "gap"
  head_zeroinit: bool = True
  scan: bool = False
  remat_policy: str = "none"
  dtype_mm: str = "float32"
  channels: Optional[int] = None

  def resolved(self) -> dict[str, Any]:
    """The architecture after decoding `variant`: width, depth, mlp_dim, num_heads, patch."""
    cfg = dict(width=768, depth=12, mlp_dim=None, num_heads=12, patch_size=(16, 16))
    cfg.update(decode_variant(self.variant))
    for key in cfg:
      if getattr(self, key) is not None:
        cfg[key] = getattr(self, key)
    cfg["patch_size"] = tuple(cfg["patch_size"])
    return cfg

  @nn.compact
  def __call__(self, image: jax.Array, *, train: bool = False):
    """Encodes images.

    Args:
      image: [B, H, W, C] float in [-1, 1]; H, W multiples of the patch size.
      train: enables dropout (needs a 'dropout' rng).

    Returns:
      (x, out): x is out['logits'] when a head exists, else out['pre_logits'].
      out['stem'] [B, h, w, D], out['with_posemb'] [B, h*w, D], out['encoded']
      [B, N, D] (N = h*w, +1 with pool_type='tok'), out['pre_logits'] ([B, D] pooled,
      or [B, N, D] for pool_type='none'), out['pre_logits_2d'] [B, h, w, D'],
      out['logits'] when num_classes is set.
    """
    cfg = self.resolved()
    width = cfg["width"]
    out = {}
    if self.channels is not None and image.shape[-1] != self.channels:
      if image.shape[-1] != 1:
        raise ValueError(f"Image has {image.shape[-1]} channels; the model expects "
                         f"{self.channels} (only 1 -> {self.channels} is repeated).")
      image = jnp.repeat(image, self.channels, axis=-1)
    image = jnp.asarray(image, self.dtype_mm)

    x = out["stem"] = nn.Conv(width, cfg["patch_size"], strides=cfg["patch_size"],
                              padding="VALID", name="embedding", dtype=self.dtype_mm)(image)
    n, h, w, c = x.shape
    x = jnp.reshape(x, [n, h * w, c])
    if self.posemb == "learn":
      pe = self.param("pos_embedding", nn.initializers.normal(stddev=1 / np.sqrt(c)),
                      (1, h * w, c), jnp.float32)
    elif self.posemb == "sincos2d":
      pe = posemb_sincos_2d(h, w, c)
    else:
      raise ValueError(f"Unknown posemb {self.posemb!r}: use 'learn' or 'sincos2d'.")
    x = out["with_posemb"] = x + pe.astype(x.dtype)

    if self.pool_type == "tok":
      cls = self.param("cls", nn.initializers.zeros, (1, 1, c), jnp.float32)
      x = jnp.concatenate([jnp.tile(cls.astype(x.dtype), [n, 1, 1]), x], axis=1)
    x = nn.Dropout(rate=self.dropout)(x, not train)

    x = Encoder(depth=cfg["depth"], mlp_dim=cfg["mlp_dim"], num_heads=cfg["num_heads"],
                dropout=self.dropout, scan=self.scan, remat_policy=self.remat_policy,
                dtype_mm=self.dtype_mm, name="Transformer")(x, deterministic=not train)
    encoded = out["encoded"] = x

    if self.pool_type == "map":
      x = out["head_input"] = MAPHead(num_heads=cfg["num_heads"], mlp_dim=cfg["mlp_dim"])(x)
    elif self.pool_type == "gap":
      x = out["head_input"] = jnp.mean(x, axis=1)
    elif self.pool_type == "tok":
      x = out["head_input"] = x[:, 0]
      encoded = encoded[:, 1:]
    elif self.pool_type != "none":
      raise ValueError(f"Unknown pool_type {self.pool_type!r}: use none, gap, map or tok.")

    x_2d = jnp.reshape(encoded, [n, h, w, -1])
    if self.rep_size:
      rep_size = width if self.rep_size is True else self.rep_size
      hid = nn.Dense(rep_size, name="pre_logits")
      x_2d = nn.tanh(hid(x_2d))
      x = nn.tanh(hid(x))
    out["pre_logits_2d"] = x_2d
    out["pre_logits"] = x

    if self.num_classes:
      kw = {"kernel_init": nn.initializers.zeros} if self.head_zeroinit else {}
      head = nn.Dense(self.num_classes, name="head", **kw)
      out["logits_2d"] = head(x_2d)
      x = out["logits"] = head(x)
    return x, out


def scan_to_loop(params: dict) -> dict:
  """Splits `Transformer/encoderblock` (leading depth axis) into `encoderblock_{i}`."""
  t = dict(params["Transformer"])
  stacked = t.pop("encoderblock")
  depth = jax.tree.leaves(stacked)[0].shape[0]
  for i in range(depth):
    t[f"encoderblock_{i}"] = jax.tree.map(lambda a, i=i: a[i], stacked)
  return {**params, "Transformer": t}


def loop_to_scan(params: dict) -> dict:
  """Stacks `Transformer/encoderblock_{i}` into one `encoderblock` with a depth axis."""
  t = dict(params["Transformer"])
  ids = sorted(int(k.rsplit("_", 1)[1]) for k in t if k.startswith("encoderblock_"))
  if ids != list(range(len(ids))) or not ids:
    raise ValueError(f"Transformer blocks are not encoderblock_0..N-1: got indices {ids}.")
  blocks = [t.pop(f"encoderblock_{i}") for i in ids]
  t["encoderblock"] = jax.tree.map(lambda *a: np.stack([np.asarray(v) for v in a]), *blocks)
  return {**params, "Transformer": t}
