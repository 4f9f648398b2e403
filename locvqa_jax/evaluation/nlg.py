"""BLEU-1..4, METEOR, ROUGE-L and CIDEr of difference answers through pycocoevalcap, as EKAID.

EKAID's protocol (DATA_FORMATS.md 4.1) is pycocoevalcap's `COCOEvalCap.evaluate` without SPICE:
Stanford PTBTokenizer with `-lowerCase`, punctuation tokens dropped, then corpus BLEU (closest
reference length), METEOR 1.5 (`-l en -norm`), ROUGE-L and CIDEr (IDF from the evaluated
references). One reference per answer.

Two Java programs are involved: the tokenizer (one process for all answers, references and
predictions together) and METEOR. The tokenizer call mirrors
`pycocoevalcap.tokenizer.ptbtokenizer.PTBTokenizer` (same jar, flags and punctuation list) but
writes its temporary file to the system temp directory instead of the installed package folder,
which may be read-only. METEOR runs in pycocoevalcap's own `Meteor` process and receives the same
requests as `Meteor.compute_score`, streamed rather than one round trip per answer (2-3x faster
on 70,000 answers) and followed by a progress bar; the numbers are those of `compute_score`.
That process loads METEOR's tables for about 10 s, so one is kept for every scoring of the
Python process (a model, its blind run and a baseline are three), and `start_meteor` starts it
early, to load while a model decodes.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import importlib.metadata
import io
import os
import shutil
import subprocess
import tempfile
import threading
from typing import Optional, Sequence

import tqdm
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer import ptbtokenizer

JAVA_INSTALL_HINT = (
    "BLEU/METEOR/ROUGE-L/CIDEr need Java: pycocoevalcap's PTBTokenizer and METEOR 1.5 are Java "
    "programs, and no `java` was found on PATH. Install a Java runtime, e.g. "
    "`apt-get install default-jre-headless` (Debian/Ubuntu), "
    "`conda install -c conda-forge openjdk`, or `brew install openjdk`, and make sure "
    "`java -version` works.")


class JavaNotFoundError(RuntimeError):
  """No `java` executable: the NLG metrics cannot run."""


def require_java() -> str:
  """Returns the path of `java`, or raises JavaNotFoundError saying what to install."""
  java = shutil.which("java")
  if java is None:
    raise JavaNotFoundError(JAVA_INSTALL_HINT)
  return java


def protocol() -> dict:
  """The settings recorded next to the NLG scores in metrics.json."""
  return {
      "library": f"pycocoevalcap=={importlib.metadata.version('pycocoevalcap')}",
      "tokenizer": "Stanford PTBTokenizer (CoreNLP 3.4.1) -preserveLines -lowerCase, "
                   "punctuation tokens removed",
      "bleu": "corpus BLEU-1..4, closest reference length",
      "meteor": "METEOR 1.5 -l en -norm",
      "rouge_l": "ROUGE-L, beta 1.2",
      "cider": "pycocoevalcap Cider (n=4, sigma=6), IDF from the evaluated references",
      "references_per_answer": 1,
  }


def ptb_tokenize(sentences: Sequence[str]) -> list[str]:
  """Tokenizes with pycocoevalcap's PTBTokenizer protocol in one Java process.

  Args:
    sentences: [N] raw strings.

  Returns:
    [N] lower-cased strings, tokens joined by single spaces, punctuation tokens removed.
  """
  jar_dir = os.path.dirname(os.path.abspath(ptbtokenizer.__file__))
  jar = os.path.join(jar_dir, ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR)
  text = "\n".join(s.replace("\r", " ").replace("\n", " ") for s in sentences)
  with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
    f.write(text.encode())
  try:
    completed = subprocess.run(
        [require_java(), "-cp", jar, "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines",
         "-lowerCase", f.name],
        cwd=jar_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
  finally:
    os.remove(f.name)
  if completed.returncode != 0:
    raise RuntimeError(
        f"PTBTokenizer ({jar}) exited with status {completed.returncode}: "
        f"{completed.stderr.decode(errors='replace')[-2000:]}")
  lines = completed.stdout.decode().split("\n")
  # Trailing empty inputs produce no output lines; any other shortfall means misalignment.
  if len(lines) < len(sentences) and any(s.strip() for s in sentences[len(lines):]):
    raise RuntimeError(
        f"PTBTokenizer returned {len(lines)} lines for {len(sentences)} sentences")
  lines += [""] * (len(sentences) - len(lines))
  return [
      " ".join(w for w in line.rstrip().split(" ") if w not in ptbtokenizer.PUNCTUATIONS)
      for line in lines[:len(sentences)]
  ]


def _meteor_line(hypothesis: str, references: Sequence[str]) -> str:
  """The `SCORE` request of `Meteor._stat`, byte for byte.

  The texts are `ptb_tokenize` output, one line each (it replaces line breaks in its input); a
  line break here would split the request, and the shared process would then answer every later
  request with the reply to the one before.
  """
  hypothesis = hypothesis.replace("|||", "").replace("  ", " ")
  return " ||| ".join(("SCORE", " ||| ".join(references), hypothesis)) + "\n"


_METEOR_LOCK = threading.Lock()
_meteor: Optional[Meteor] = None  # This Python process's METEOR process, once started.
_meteor_stderr: collections.deque = collections.deque(maxlen=50)  # Its last stderr lines.


def start_meteor() -> None:
  """Starts the shared METEOR process unless one runs; returns at once (it loads in the back).

  Raises:
    JavaNotFoundError: no `java` on PATH.
  """
  _shared_meteor()


def _shared_meteor() -> Meteor:
  global _meteor
  with _METEOR_LOCK:
    if _meteor is None or _meteor.meteor_p.poll() is not None:
      require_java()
      if _meteor is None:
        atexit.register(_stop_shared_meteor)
      else:
        _stop(_meteor.meteor_p)  # It died: release its pipes.
      _meteor = Meteor()
      _meteor_stderr.clear()
      # Read its stderr all along: a pipe that nobody reads stops the process once it is full.
      threading.Thread(target=_keep_stderr, args=(_meteor.meteor_p.stderr,), daemon=True).start()
    return _meteor


def _keep_stderr(stream) -> None:
  for line in iter(stream.readline, b""):
    _meteor_stderr.append(line.decode(errors="replace"))


def _stop(process: subprocess.Popen) -> None:
  if process.poll() is None:
    process.kill()
    process.wait()
  for stream in (process.stdin, process.stdout):
    try:
      stream.close()
    except OSError:
      pass


def _stop_shared_meteor() -> None:
  if _meteor is not None:
    _stop(_meteor.meteor_p)


def _forget_meteor(meteor: Meteor) -> None:
  """Stops a METEOR process that failed, so that the next scoring starts a new one."""
  global _meteor
  with _METEOR_LOCK:
    if _meteor is meteor:
      _meteor = None
  _stop(meteor.meteor_p)


def _meteor_score(gts: dict[int, list[str]], res: dict[int, list[str]], progress: bool) -> float:
  """Corpus METEOR from the shared METEOR process, with the requests of `Meteor.compute_score`.

  `compute_score` waits for each answer's statistics before sending the next request; here a
  thread streams the requests while this one reads the replies, so the Java process never waits
  on Python. The process answers in order, so the statistics and the score are the same, and it
  is left ready for the next scoring.
  """
  meteor = _shared_meteor()
  process = meteor.meteor_p
  failure: list[BaseException] = []

  def send_requests() -> None:
    try:
      for i in gts:
        process.stdin.write(_meteor_line(res[i][0], gts[i]).encode())
      process.stdin.flush()
    except (BrokenPipeError, OSError) as e:
      failure.append(e)

  writer = threading.Thread(target=send_requests, daemon=True)
  try:
    with meteor.lock:
      writer.start()
      stats = [
          process.stdout.readline().decode().strip()
          for _ in tqdm.tqdm(gts, desc="METEOR", unit="answer", disable=not progress,
                             mininterval=1.0)
      ]
      writer.join()
      if failure or not all(stats):
        raise RuntimeError(f"METEOR stopped answering: {failure or 'empty reply'}")
      process.stdin.write(("EVAL ||| " + " ||| ".join(stats) + "\n").encode())
      process.stdin.flush()
      for _ in gts:  # per-answer scores come first, then the corpus score
        process.stdout.readline()
      line = process.stdout.readline().strip()
  except BaseException:
    _forget_meteor(meteor)
    raise
  try:
    return float(line)
  except ValueError:
    _forget_meteor(meteor)
    err = "".join(_meteor_stderr)[-2000:]
    raise RuntimeError(f"METEOR returned {line!r} instead of a score; stderr: {err}") from None


def cider_per_answer(references: Sequence[str], predictions: Sequence[str]) -> list[float]:
  """CIDEr-D of each prediction, as `score_nlg` computes it (PTB tokens, IDF of all references).

  The mean of the returned list is `score_nlg`'s corpus CIDEr; the IDF stays that of the whole
  set, so per-answer values can be resampled (evaluation/bootstrap.py) without re-scoring.
  """
  if len(references) != len(predictions) or not references:
    raise ValueError(f"cider_per_answer: {len(references)} references and {len(predictions)} "
                     "predictions (need the same number, at least one)")
  n = len(references)
  tokens = ptb_tokenize(list(references) + list(predictions))
  _, scores = Cider().compute_score({i: [tokens[i]] for i in range(n)},
                                    {i: [tokens[n + i]] for i in range(n)})
  return [float(s) for s in scores]


def score_nlg(references: Sequence[str], predictions: Sequence[str],
              progress: bool = False) -> dict:
  """BLEU-1..4, METEOR, ROUGE-L and CIDEr of predictions against one reference each.

  Args:
    references: [N] reference answers, N >= 1.
    predictions: [N] predicted answers, aligned with `references`.
    progress: show progress bars on stderr.

  Returns:
    {"bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider"} corpus scores and "n".
  """
  if len(references) != len(predictions):
    raise ValueError(f"score_nlg: {len(references)} references but {len(predictions)} predictions")
  if not references:
    raise ValueError("score_nlg: no answers to score")
  require_java()
  n = len(references)
  stages = tqdm.tqdm(total=5, desc="NLG metrics", unit="stage", disable=not progress)
  stages.set_postfix_str("PTBTokenizer")
  tokens = ptb_tokenize(list(references) + list(predictions))
  gts = {i: [tokens[i]] for i in range(n)}
  res = {i: [tokens[n + i]] for i in range(n)}
  stages.update()
  stages.set_postfix_str("BLEU")
  with contextlib.redirect_stdout(io.StringIO()):  # BleuScorer prints its length ratios
    bleu, _ = Bleu(4).compute_score(gts, res)
  stages.update()
  stages.set_postfix_str("METEOR")
  meteor = _meteor_score(gts, res, progress)
  stages.update()
  stages.set_postfix_str("ROUGE-L")
  rouge, _ = Rouge().compute_score(gts, res)
  stages.update()
  stages.set_postfix_str("CIDEr")
  cider, _ = Cider().compute_score(gts, res)
  stages.update()
  stages.close()
  return {
      "bleu_1": float(bleu[0]),
      "bleu_2": float(bleu[1]),
      "bleu_3": float(bleu[2]),
      "bleu_4": float(bleu[3]),
      "meteor": meteor,
      "rouge_l": float(rouge),
      "cider": float(cider),
      "n": n,
  }
