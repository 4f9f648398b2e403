r"""Answer one question about a pair of chest X-rays, optionally locating the named findings.

  python -m locvqa_jax.answer --workdir W --main MAIN.jpg --reference REF.jpg \
      --question "what has changed compared to the reference image?" \
      [--grounding OUT.png [--pretrain_workdir P]] [--beam_size K] [--step N]

Both images are read as grayscale and letterboxed like the datasets (locvqa_jax/data/letterbox.py)
to the run's resolution; the answer is decoded from the run's best-on-validation checkpoint (or
--step). With --grounding, every finding the answer names (the Diff-VQA answer grammar,
locvqa_jax/evaluation/findings.py) is located on both images by the pretraining decoder's CAREF
task (prefix `<caref> {finding}`, 4 greedy location tokens) of P (default: the run's
config.init.encoder workdir), and the boxes are drawn on the reference and main images side by
side. Boxes are (ymin, xmin, ymax, xmax) in [0, 1] of the letterboxed frame.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Optional, Sequence

import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

from locvqa_jax import vqa_predict
from locvqa_jax.caref import Grounder, pretrain_workdir_of, to_model_input

BOS_ID = 2
_COLORS = ((230, 60, 60), (60, 160, 255), (80, 200, 80), (240, 200, 40), (200, 90, 220),
           (255, 140, 40))


def load_image(path: str, size: int) -> np.ndarray:
  """A radiograph file -> letterboxed [size, size] uint8 (longest side to size, centred)."""
  from locvqa_jax.data import letterbox  # pylint: disable=g-import-not-at-top
  with Image.open(path) as pil:
    gray = np.asarray(pil.convert("L"))
  return letterbox.letterbox(gray, size)


def res_of(config: Any) -> int:
  return int(str(config.input.res).lstrip("r"))


def answer(run: Any, main: np.ndarray, reference: np.ndarray, question: str, *,
           beam_size: int = 1, length_penalty: float = 1.0) -> str:
  """The run's answer for letterboxed uint8 images [R, R] and a question."""
  ids = run.tok.encode(question)[:run.config.input.max_question_len]
  prefix = jnp.asarray([[BOS_ID] + ids], jnp.int32)
  images = jnp.asarray(np.stack([to_model_input(reference), to_model_input(main)])[None])
  decoder = vqa_predict.make_decoder(run.model, max_decode_len=run.config.input.max_answer_len + 1,
                                     beam_size=beam_size, length_penalty=length_penalty)
  tokens = decoder(run.params, images, prefix, jnp.asarray([prefix.shape[1]], jnp.int32))
  return vqa_predict.answer_text(run.tok, np.asarray(tokens)[0])


def findings_in_answer(text: str) -> list[tuple[str, str]]:
  """(finding, direction) items an answer names, in a stable order."""
  from locvqa_jax.evaluation import findings  # pylint: disable=g-import-not-at-top
  return sorted(findings.parse_difference(text).items)


def draw(reference: np.ndarray, main: np.ndarray, boxes: np.ndarray, labels: Sequence[str],
         text: str, path: str) -> None:
  """Reference | main side by side with boxes [2, F, 4] (reference first) and the answer."""
  size = reference.shape[0]
  canvas = Image.new("RGB", (2 * size, size + 28), (0, 0, 0))
  for k, image in enumerate((reference, main)):
    canvas.paste(Image.fromarray(image).convert("RGB"), (k * size, 0))
  pen = ImageDraw.Draw(canvas)
  for k, title in enumerate(("reference", "main")):
    pen.text((k * size + 4, 4), title, fill=(255, 255, 255))
    for j, label in enumerate(labels):
      box = boxes[k, j]
      if np.isnan(box).any():
        continue
      y0, x0, y1, x1 = (float(c) * (size - 1) for c in box)
      color = _COLORS[j % len(_COLORS)]
      pen.rectangle([k * size + x0, y0, k * size + x1, y1], outline=color, width=2)
      pen.text((k * size + x0 + 2, y0 + 2), label, fill=color)
  pen.text((4, size + 8), text[:2 * size // 6], fill=(255, 255, 255))
  canvas.save(path)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m locvqa_jax.answer", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True, help="a difference-VQA run")
  parser.add_argument("--main", required=True, help="the current image (JPG/PNG)")
  parser.add_argument("--reference", required=True, help="the earlier image")
  parser.add_argument("--question", required=True)
  parser.add_argument("--step", type=int, help="checkpoint step (default: best on validation)")
  parser.add_argument("--beam_size", type=int, default=1)
  parser.add_argument("--length_penalty", type=float, default=1.0)
  parser.add_argument("--grounding", metavar="OUT.png", help="draw the named findings' boxes")
  parser.add_argument("--pretrain_workdir", metavar="P",
                      help="pretraining run for CAREF (default: the run's encoder_init workdir)")
  parser.add_argument("--json", action="store_true", help="print a JSON object instead of text")
  args = parser.parse_args(argv)
  # orbax notes at WARNING every checkpoint item it is not asked to restore.
  logging.getLogger("absl").setLevel(logging.ERROR)
  from locvqa_jax import vqa_evaluate  # pylint: disable=g-import-not-at-top
  run = vqa_evaluate.Run(args.workdir, args.step)
  res = res_of(run.config)
  main_img, ref_img = load_image(args.main, res), load_image(args.reference, res)
  text = answer(run, main_img, ref_img, args.question, beam_size=args.beam_size,
                length_penalty=args.length_penalty)
  result = {"question": args.question, "answer": text}
  if args.grounding:
    try:
      pretrain = args.pretrain_workdir or pretrain_workdir_of(run.config)
    except ValueError as e:
      parser.error(str(e))
    items = findings_in_answer(text)
    labels = [f for f, _ in items]
    boxes = np.full((2, 0, 4), np.nan, np.float32)
    if labels:
      grounder = Grounder(pretrain, batch_size=2 * len(labels))
      boxes = grounder.locate([ref_img, main_img], labels)
    draw(ref_img, main_img, boxes, [f"{f} ({d})" for f, d in items], text, args.grounding)
    result["findings"] = [
        {"finding": f, "direction": d,
         "reference_box": None if np.isnan(boxes[0, j]).any() else boxes[0, j].tolist(),
         "main_box": None if np.isnan(boxes[1, j]).any() else boxes[1, j].tolist()}
        for j, (f, d) in enumerate(items)]
    result["grounding"] = args.grounding
  if args.json:
    print(json.dumps(result))
  else:
    print(text)
    for f in result.get("findings", []):
      print(f"  {f['finding']} ({f['direction']}): reference {f['reference_box']}, "
            f"main {f['main_box']}")
    if args.grounding:
      print(f"boxes drawn in {args.grounding}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
