"""SentencePiece tokenizer with location tokens and task prefixes; box <-> token helpers.

Fixed ids: pad 0, eos 1, bos 2, unk 3. The 1024 location tokens `<loc0000>`..`<loc1023>` and the
task prefixes `<cap>`, `<aref>`, `<gcap>`, `<caref>` are user-defined symbols, so they are always
single tokens and can never be produced from report text (a bare `cap` would match "apical cap").
The parallel-prediction `[MASK]` id is `vocab_size`: one extra embedding row, never produced by
`encode`.

Boxes follow the PaliGemma convention: (ymin, xmin, ymax, xmax) in [0, 1], each coordinate
`clip(round(c * 1023), 0, 1023)`, decoded as `k / 1023`.

Train a tokenizer on the built datasets' training text:

  python -m locvqa_jax.tokenizer --data_dir D --config r128 --vocab_size 2000 --out tokenizer.model
"""

from __future__ import annotations

import argparse
import io
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np
import sentencepiece as spm

PAD_ID, EOS_ID, BOS_ID, UNK_ID = 0, 1, 2, 3
NUM_LOC_TOKENS = 1024
LOC_TOKENS = tuple(f"<loc{i:04d}>" for i in range(NUM_LOC_TOKENS))
TASK_TOKENS = ("<cap>", "<aref>", "<gcap>", "<caref>")
USER_SYMBOLS = LOC_TOKENS + TASK_TOKENS
# The synthetic reports use a few hundred distinct words; larger requests are capped by
# SentencePiece itself (hard_vocab_limit=False) instead of failing.
DEFAULT_VOCAB_SIZE = 2000


class Tokenizer:
  """A SentencePiece model with the project's fixed special ids and user-defined symbols."""

  def __init__(self, model_proto: bytes):
    self._proto = bytes(model_proto)
    self._sp = spm.SentencePieceProcessor(model_proto=self._proto)
    checks = {"pad": (self._sp.pad_id(), PAD_ID), "eos": (self._sp.eos_id(), EOS_ID),
              "bos": (self._sp.bos_id(), BOS_ID), "unk": (self._sp.unk_id(), UNK_ID)}
    for name, (got, want) in checks.items():
      if got != want:
        raise ValueError(f"SentencePiece model has {name}_id={got}, expected {want}; train it "
                         "with locvqa_jax.tokenizer.")
    self.loc_ids = tuple(self._sp.piece_to_id(p) for p in LOC_TOKENS)
    self.task_ids = {p: self._sp.piece_to_id(p) for p in TASK_TOKENS}
    missing = [p for p, i in zip(USER_SYMBOLS, self.loc_ids + tuple(self.task_ids.values()))
               if i == UNK_ID]
    if missing:
      raise ValueError(f"SentencePiece model lacks user-defined symbols {missing[:5]} "
                       f"({len(missing)} in all); train it with locvqa_jax.tokenizer.")
    self._special = frozenset(self.loc_ids) | frozenset(self.task_ids.values())
    self._loc_index = {t: k for k, t in enumerate(self.loc_ids)}
    space = self._sp.piece_to_id("\u2581")
    self._space_id = -1 if space == UNK_ID else space  # a vocabulary may lack the bare piece

  # -- construction and serialisation -------------------------------------------------------

  @classmethod
  def from_file(cls, path: str) -> "Tokenizer":
    with open(path, "rb") as f:
      return cls(f.read())

  @classmethod
  def from_bytes(cls, model_proto: bytes) -> "Tokenizer":
    return cls(model_proto)

  def to_bytes(self) -> bytes:
    return self._proto

  def save(self, path: str) -> None:
    with open(path, "wb") as f:
      f.write(self._proto)

  def __getstate__(self):
    # Grain worker processes receive the tokenizer by pickling; the C++ processor cannot be.
    return {"proto": self._proto}

  def __setstate__(self, state):
    self.__init__(state["proto"])

  # -- ids ----------------------------------------------------------------------------------

  @property
  def vocab_size(self) -> int:
    return self._sp.get_piece_size()

  @property
  def mask_id(self) -> int:
    return self.vocab_size

  pad_id, eos_id, bos_id, unk_id = PAD_ID, EOS_ID, BOS_ID, UNK_ID

  def encode(self, text: str) -> list[int]:
    """Text -> ids, without bos/eos.

    The word-boundary piece SentencePiece puts before a user-defined symbol (`"x <loc0001>"` ->
    `x, ▁, <loc0001>`) carries no information and is dropped, so `<cap>` is exactly one id.
    """
    ids = self._sp.encode(text)
    return [t for k, t in enumerate(ids)
            if not (t == self._space_id and k + 1 < len(ids) and ids[k + 1] in self._special)]

  def decode(self, ids: Iterable[int]) -> str:
    """Ids -> text; pad, bos, eos and the mask id are skipped, decoding stops at the first eos."""
    out = []
    for t in ids:
      t = int(t)
      if t == EOS_ID:
        break
      if t in (PAD_ID, BOS_ID) or t >= self.vocab_size:
        continue
      out.append(t)
    return self._sp.decode(out)

  def id_to_piece(self, i: int) -> str:
    return self._sp.id_to_piece(int(i))

  def is_loc(self, i: int) -> bool:
    return int(i) in self._loc_index

  # -- boxes --------------------------------------------------------------------------------

  def box_to_ids(self, box: Sequence[float]) -> list[int]:
    """box: (ymin, xmin, ymax, xmax) in [0, 1] -> 4 location-token ids."""
    return [self.loc_ids[k] for k in box_to_bins(box)]

  def ids_to_box(self, ids: Sequence[int]) -> np.ndarray:
    """4 location-token ids -> [4] float32 box; raises if any id is not a location token."""
    if len(ids) != 4 or not all(self.is_loc(t) for t in ids):
      raise ValueError(f"expected 4 location-token ids, got {list(ids)}")
    return bins_to_box([self._loc_index[int(t)] for t in ids])

  def parse_box(self, ids: Iterable[int]) -> Optional[np.ndarray]:
    """First run of 4 consecutive location tokens in decoded ids -> [4] float32 box, or None."""
    run = []
    for t in ids:
      t = int(t)
      if self.is_loc(t):
        run.append(t)
        if len(run) == 4:
          return self.ids_to_box(run)
      else:
        run = []
    return None


def box_to_bins(box: Sequence[float]) -> list[int]:
  """(ymin, xmin, ymax, xmax) in [0, 1] -> 4 bins `clip(round(c * 1023), 0, 1023)`."""
  b = np.clip(np.round(np.asarray(box, np.float64) * (NUM_LOC_TOKENS - 1)), 0, NUM_LOC_TOKENS - 1)
  return [int(v) for v in b]


def bins_to_box(bins: Sequence[int]) -> np.ndarray:
  """4 bins -> [4] float32 box `k / 1023`."""
  return np.asarray(bins, np.float32) / np.float32(NUM_LOC_TOKENS - 1)


def train_tokenizer(sentences: Iterable[str], vocab_size: int = DEFAULT_VOCAB_SIZE,
                    model_type: str = "unigram") -> Tokenizer:
  """Trains a SentencePiece model on `sentences` with the fixed ids and user-defined symbols.

  `vocab_size` counts the 1028 user-defined symbols, the 4 special ids and the 256 byte pieces
  (byte fallback: a character the corpus never showed is spelled in bytes, never unk); a corpus
  too small for it yields a smaller vocabulary rather than an error.
  """
  minimum = len(USER_SYMBOLS) + 4 + 256
  if vocab_size <= minimum:
    raise ValueError(f"vocab_size={vocab_size} must exceed {minimum} (1028 user-defined symbols "
                     "+ 4 special ids + 256 byte pieces + at least one learned piece)")
  it = (s for s in sentences if s.strip())
  proto = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=it, model_writer=proto, vocab_size=vocab_size, model_type=model_type,
      pad_id=PAD_ID, eos_id=EOS_ID, bos_id=BOS_ID, unk_id=UNK_ID,
      user_defined_symbols=list(USER_SYMBOLS), hard_vocab_limit=False,
      character_coverage=1.0, byte_fallback=True, minloglevel=2, num_threads=1)
  return Tokenizer(proto.getvalue())


def corpus_from_datasets(data_dir: str, config: str, *,
                         drop_vqa_eval_studies: bool = True) -> Iterator[str]:
  """Training-split text of the built datasets: the CAP text of each MIMIC-CXR study (findings +
  impression), Chest ImaGenome region phrases, VQA questions and answers.

  Studies of the VQA validation/test splits are left out unless `drop_vqa_eval_studies=False`.
  Datasets that are not built under `data_dir` are skipped with a message.
  """
  from locvqa_jax.data import tasks  # pylint: disable=g-import-not-at-top
  excluded = tasks.vqa_eval_study_ids(data_dir, config) if drop_vqa_eval_studies else set()
  counts, reports_seen = {}, set()
  for name, record in tasks.iter_text_records(data_dir, config, "train"):
    study = tasks.as_str(record.get("study_id", b""))
    if name != "mimic_diff_vqa" and study in excluded:
      counts["dropped " + name] = counts.get("dropped " + name, 0) + 1
      continue
    counts[name] = counts.get(name, 0) + 1
    if name == "mimic_cxr":
      if study not in reports_seen:  # the images of a study share one report
        reports_seen.add(study)
        yield tasks.cap_text(record)
    elif name == "chest_imagenome":
      yield from (tasks.as_str(t) for t in record["phrases"]["text"])
    else:
      q = record["questions"]
      yield from (tasks.as_str(t) for t in q["question"])
      yield from (tasks.as_str(t) for t in q["answer"])
  print("tokenizer corpus records:", ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))


def main(argv: Optional[Sequence[str]] = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--data_dir", required=True, help="TFDS data_dir holding the built datasets")
  parser.add_argument("--config", default="r128", help="builder config (r128, r224, r448)")
  parser.add_argument("--vocab_size", type=int, default=DEFAULT_VOCAB_SIZE)
  parser.add_argument("--model_type", default="unigram", choices=("unigram", "bpe"))
  parser.add_argument("--keep_vqa_eval_studies", action="store_true",
                      help="also use studies of the VQA validation/test splits (leaks them)")
  parser.add_argument("--out", required=True, help="where to write the .model file")
  args = parser.parse_args(argv)
  corpus = corpus_from_datasets(args.data_dir, args.config,
                                drop_vqa_eval_studies=not args.keep_vqa_eval_studies)
  tok = train_tokenizer(corpus, args.vocab_size, args.model_type)
  tok.save(args.out)
  print(f"wrote {args.out}: vocab_size={tok.vocab_size} (mask id {tok.mask_id})")


if __name__ == "__main__":
  main()
