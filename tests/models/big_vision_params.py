"""Reference parameter names and shapes of big_vision's ViT (models/vit.py).

Written out from big_vision's published model code, independently of
locvqa_jax.models.vit: Conv `embedding`, learned `pos_embedding` [1, h*w, D], blocks
`Transformer/encoderblock_{i}` with LayerNorm_0, MultiHeadDotProductAttention_0
(query/key/value kernel [D, H, D/H], bias [H, D/H]; out kernel [H, D/H, D], bias
[D]), LayerNorm_1, MlpBlock_0 (Dense_0 [D, M], Dense_1 [M, D]); with scan=True one
`Transformer/encoderblock` whose leaves gain a leading depth axis;
`Transformer/encoder_norm`; the MAP head `MAPHead_0` (probe [1, 1, D], its own
attention, LayerNorm_0 and MlpBlock_0); `head` when num_classes is set.
"""


def _layer_norm(prefix, d, lead=()):
  return {f"{prefix}/scale": lead + (d,), f"{prefix}/bias": lead + (d,)}


def _attention(prefix, d, heads, lead=()):
  out = {}
  for name in ("query", "key", "value"):
    out[f"{prefix}/{name}/kernel"] = lead + (d, heads, d // heads)
    out[f"{prefix}/{name}/bias"] = lead + (heads, d // heads)
  out[f"{prefix}/out/kernel"] = lead + (heads, d // heads, d)
  out[f"{prefix}/out/bias"] = lead + (d,)
  return out


def _mlp(prefix, d, mlp, lead=()):
  return {f"{prefix}/Dense_0/kernel": lead + (d, mlp), f"{prefix}/Dense_0/bias": lead + (mlp,),
          f"{prefix}/Dense_1/kernel": lead + (mlp, d), f"{prefix}/Dense_1/bias": lead + (d,)}


def _block(prefix, d, mlp, heads, lead=()):
  out = {}
  out.update(_layer_norm(f"{prefix}/LayerNorm_0", d, lead))
  out.update(_attention(f"{prefix}/MultiHeadDotProductAttention_0", d, heads, lead))
  out.update(_layer_norm(f"{prefix}/LayerNorm_1", d, lead))
  out.update(_mlp(f"{prefix}/MlpBlock_0", d, mlp, lead))
  return out


def vit_shapes(*, width, depth, mlp_dim, num_heads, patch, grid, channels, scan,
               map_head=True, num_classes=None):
  """{'/'-joined name: shape} of a big_vision ViT with a learned position embedding."""
  d = width
  shapes = {
      "embedding/kernel": (patch, patch, channels, d),
      "embedding/bias": (d,),
      "pos_embedding": (1, grid * grid, d),
  }
  if scan:
    shapes.update(_block("Transformer/encoderblock", d, mlp_dim, num_heads, lead=(depth,)))
  else:
    for i in range(depth):
      shapes.update(_block(f"Transformer/encoderblock_{i}", d, mlp_dim, num_heads))
  shapes.update(_layer_norm("Transformer/encoder_norm", d))
  if map_head:
    shapes["MAPHead_0/probe"] = (1, 1, d)
    shapes.update(_attention("MAPHead_0/MultiHeadDotProductAttention_0", d, num_heads))
    shapes.update(_layer_norm("MAPHead_0/LayerNorm_0", d))
    shapes.update(_mlp("MAPHead_0/MlpBlock_0", d, mlp_dim))
  if num_classes:
    shapes["head/kernel"] = (d, num_classes)
    shapes["head/bias"] = (num_classes,)
  return shapes


# ViT-B/16 at 224 px (14 x 14 patches), RGB.
B16 = dict(width=768, depth=12, mlp_dim=3072, num_heads=12, patch=16, grid=14, channels=3)
# SigLIP So400m/14 image tower at 224 px (16 x 16 patches), RGB.
SO400M14 = dict(width=1152, depth=27, mlp_dim=4304, num_heads=16, patch=14, grid=16,
                channels=3)
# Sum over the So400m/14 list above with the MAP head (the SigLIP paper's "400M-class"
# image tower, about 428M).
SO400M14_MAP_NUM_PARAMS = 427_680_704
