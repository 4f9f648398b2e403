r"""Exports a workdir's ViT encoder as a Hugging Face SiglipVisionModel or a big_vision npz.

  python tools/export_encoder.py --workdir W [--step N] --format hf --out DIR
  python tools/export_encoder.py --workdir W --format npz --out DIR

--format hf writes DIR/config.json and DIR/model.safetensors, loadable with
`transformers.SiglipVisionModel.from_pretrained(DIR)` (see docs/export.md for the
pre-processing and which outputs match). --format npz writes DIR/encoder.npz (big_vision
names, the layout the model was trained with) and DIR/vit_config.json (the vit.Model
fields), which `model_init` / `encoder_init` and `npz.load_encoder_init` read back.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any, Mapping, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from locvqa_jax.export import hf_siglip  # pylint: disable=g-import-not-at-top,wrong-import-position
from locvqa_jax.models import npz  # pylint: disable=g-import-not-at-top,wrong-import-position

FORMATS = ("hf", "npz")


def load_from_workdir(workdir: str, step: Optional[int]) -> tuple[dict[str, Any], Any, Any]:
  """(vit.Model kwargs, encoder params, training resolution or None) of a workdir's checkpoint."""
  from locvqa_jax import checkpointing  # pylint: disable=g-import-not-at-top
  config, params = checkpointing.load_encoder(workdir, step=step)
  return dict(config), params, _resolution(checkpointing.load_meta(workdir, step))


def _resolution(meta: Mapping[str, Any]) -> Optional[int]:
  """The training image side from the run's config (`input.res`: 224 or 'r224'), if any."""
  res = ((meta or {}).get("config") or {}).get("input", {}).get("res")
  match = re.fullmatch(r"r?(\d+)", str(res)) if res is not None else None
  return int(match.group(1)) if match else None


def export(vit_kwargs: Mapping[str, Any], params: Any, fmt: str, out_dir: str,
           image_size: Optional[int] = None, rgb: bool = False) -> list[str]:
  """Writes the encoder in `fmt` ('hf' or 'npz') under out_dir; returns the written files."""
  if fmt not in FORMATS:
    raise ValueError(f"--format {fmt!r}: expected one of {FORMATS}.")
  os.makedirs(out_dir, exist_ok=True)
  if fmt == "hf":
    hf_siglip.save(out_dir, vit_kwargs, params, image_size=image_size, rgb=rgb)
    return [os.path.join(out_dir, "config.json"), os.path.join(out_dir, "model.safetensors")]
  npz_path = os.path.join(out_dir, "encoder.npz")
  npz.save(npz_path, jax.tree.map(np.asarray, params))
  config_path = os.path.join(out_dir, "vit_config.json")
  with open(config_path, "w") as f:
    json.dump({k: list(v) if isinstance(v, tuple) else v for k, v in vit_kwargs.items()}, f,
              indent=2, sort_keys=True)
    f.write("\n")
  return [npz_path, config_path]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--workdir", required=True, help="training workdir (W/checkpoints/)")
  parser.add_argument("--step", type=int, default=None, help="checkpoint step (latest if unset)")
  parser.add_argument("--format", choices=FORMATS, required=True)
  parser.add_argument("--out", required=True, help="output folder")
  parser.add_argument("--image_size", type=int, default=None,
                      help="input side for --format hf; default: the run's input.res, or the "
                           "learned position table's grid times the patch size")
  parser.add_argument("--rgb", action="store_true",
                      help="--format hf: 3-channel stem (1-channel kernel / 3, repeated) for "
                           "pipelines that only feed RGB; feed gray as 3 identical channels")
  return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  vit_kwargs, params, res = load_from_workdir(args.workdir, args.step)
  image_size = args.image_size
  if image_size is None and vit_kwargs.get("posemb", "learn") != "learn":
    image_size = res
  if args.rgb and args.format != "hf":
    raise SystemExit("--rgb applies to --format hf only.")
  for path in export(vit_kwargs, params, args.format, args.out, image_size=image_size,
                     rgb=args.rgb):
    print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
