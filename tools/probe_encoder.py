r"""Linear probe of an encoder on the CheXpert labels: does it see the findings?

  python tools/probe_encoder.py --workdir W [--step N] --data_dir D [--config r128] \
      [--random] [--max_images 2000]

Encodes the frontal images of `mimic_cxr/<config>` train and validation with the encoder of W
(or, with --random, a freshly initialised encoder of the same shape: the floor any training must
clear), fits one L2-regularised logistic regression per CheXpert label on the flattened token
features of the train split (positive = 1, everything else negative) and prints the validation
ROC AUC per label as a table. A pretraining that taught the encoder the findings lifts the AUCs
well above the random encoder's; one whose captions come from the language prior does not.
Needs scikit-learn (in the `torch` extra).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Optional, Sequence

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from locvqa_jax import checkpointing  # pylint: disable=g-import-not-at-top
from locvqa_jax import features_cache
from locvqa_jax.data import tasks
from locvqa_jax.models import vit

FRONTAL = ("PA", "AP")


def load_split(data_dir: str, config: str, split: str, max_images: int):
  """Frontal images [N, R, R, 1] float32 in [-1, 1] and labels {name: [N] float32}."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  source = tfds.data_source(f"mimic_cxr/{config}", data_dir=data_dir)[split]
  images, labels = [], {}
  for i in range(len(source)):
    record = source[i]
    if tasks.as_str(record["view_position"]) not in FRONTAL:
      continue
    images.append(features_cache.decode_image(record["image"]))
    for name, value in record["chexpert"].items():
      labels.setdefault(name, []).append(value)
    if len(images) >= max_images:
      break
  if not images:
    raise ValueError(f"mimic_cxr/{config} {split} in {data_dir} has no frontal images")
  return np.stack(images), {k: np.asarray(v, np.float32) for k, v in labels.items()}


def encode(encoder_config: dict, params: Any, images: np.ndarray, batch: int = 64) -> np.ndarray:
  """Flattened encoder tokens [N, tokens * width] (the probe sees where, not only what)."""
  run = features_cache.encoder_fn(encoder_config)
  out = []
  for start in range(0, len(images), batch):
    chunk = images[start:start + batch]
    n = len(chunk)
    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, 0)])
    out.append(np.asarray(run(params, chunk))[:n].reshape(n, -1))
  return np.concatenate(out)


def probe(train_x, train_y, val_x, val_y, c: float) -> dict[str, Optional[float]]:
  """Validation ROC AUC per label (None when a split lacks positives or negatives)."""
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  from sklearn.metrics import roc_auc_score  # pylint: disable=g-import-not-at-top
  from sklearn.preprocessing import StandardScaler  # pylint: disable=g-import-not-at-top
  scaler = StandardScaler().fit(train_x)
  train_x, val_x = scaler.transform(train_x), scaler.transform(val_x)
  aucs = {}
  for name in sorted(train_y):
    y_train, y_val = train_y[name] == 1, val_y[name] == 1
    if len(set(y_train)) < 2 or len(set(y_val)) < 2:
      aucs[name] = None
      continue
    clf = LogisticRegression(C=c, max_iter=2000).fit(train_x, y_train)
    aucs[name] = float(roc_auc_score(y_val, clf.decision_function(val_x)))
  return aucs


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True, help="pretraining workdir")
  parser.add_argument("--step", type=int, help="checkpoint step (default: latest)")
  parser.add_argument("--data_dir", required=True, help="TFDS data_dir with mimic_cxr built")
  parser.add_argument("--config", default="r128", help="mimic_cxr builder config")
  parser.add_argument("--random", action="store_true",
                      help="also probe a randomly initialised encoder of the same shape")
  parser.add_argument("--max_images", type=int, default=2000, help="per split")
  parser.add_argument("--C", type=float, default=0.05, help="inverse L2 strength")
  args = parser.parse_args(argv)

  encoder_config, params = checkpointing.load_encoder(args.workdir, args.step)
  encoder_config = dict(encoder_config)
  train_images, train_y = load_split(args.data_dir, args.config, "train", args.max_images)
  val_images, val_y = load_split(args.data_dir, args.config, "validation", args.max_images)
  encoders = {"trained": params}
  if args.random:
    model = vit.Model(**{**encoder_config, "pool_type": "none"})
    encoders["random"] = model.init(jax.random.PRNGKey(0), train_images[:1])["params"]
  results = {}
  for name, p in encoders.items():
    results[name] = probe(encode(encoder_config, p, train_images), train_y,
                          encode(encoder_config, p, val_images), val_y, args.C)
  print(f"linear probe, {len(train_images)} train / {len(val_images)} validation frontal images "
        f"of mimic_cxr/{args.config}: validation ROC AUC")
  names = list(results)
  print(f"{'label':28s}" + "".join(f"{n:>9s}" for n in names) + "   positives")
  for label in sorted(train_y):
    cells = "".join(f"{results[n][label]:9.3f}" if results[n][label] is not None else
                    f"{'-':>9s}" for n in names)
    print(f"{label:28s}{cells}   {int((val_y[label] == 1).sum()):>9d}")
  for n in names:
    valid = [v for v in results[n].values() if v is not None]
    print(f"{'mean (' + n + ')':28s}{np.mean(valid):9.3f}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
