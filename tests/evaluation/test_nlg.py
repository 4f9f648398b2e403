"""Tests of the pycocoevalcap NLG metrics: golden values, perfect predictor, missing Java."""

import shutil

import pytest
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from locvqa_jax.evaluation import nlg

requires_java = pytest.mark.skipif(
    shutil.which("java") is None,
    reason="pycocoevalcap's PTBTokenizer and METEOR need java "
    "(apt-get install default-jre-headless)")



@pytest.fixture
def refs(golden):
  return [r["reference"] for r in golden.difference]


@pytest.fixture
def preds(golden):
  return [r["prediction"] for r in golden.difference]


@requires_java
def test_golden_values(golden, golden_metrics):
  assert golden_metrics["overall"]["nlg"] == pytest.approx(golden.nlg, abs=1e-6)


@requires_java
def test_tokenizer_matches_pycocoevalcap(refs, preds):
  sentences = refs + preds + ["", "Hello, World -- (PA) view?", "a ; b : c ... d !"]
  theirs = PTBTokenizer().tokenize({i: [{"caption": s}] for i, s in enumerate(sentences)})
  assert nlg.ptb_tokenize(sentences) == [theirs[i][0] for i in range(len(sentences))]


@requires_java
def test_perfect_predictor(refs):
  scores = nlg.score_nlg(refs, refs)
  for k in ("bleu_1", "bleu_2", "bleu_3", "bleu_4"):
    assert scores[k] == pytest.approx(1.0, abs=1e-6)
  tokens = nlg.ptb_tokenize(refs)
  gts = {i: [t] for i, t in enumerate(tokens)}
  self_cider, _ = Cider().compute_score(gts, gts)
  assert scores["cider"] == pytest.approx(self_cider, abs=1e-9)
  assert scores["rouge_l"] == pytest.approx(1.0)
  assert scores["meteor"] > 0.95


def test_missing_java_says_what_to_install(monkeypatch, refs, preds):
  monkeypatch.setattr(nlg.shutil, "which", lambda name: None)
  with pytest.raises(nlg.JavaNotFoundError, match="apt-get install default-jre-headless"):
    nlg.score_nlg(refs, preds)


def test_length_mismatch_and_empty(refs, preds):
  with pytest.raises(ValueError, match="5 references but 4 predictions"):
    nlg.score_nlg(refs, preds[:4])
  with pytest.raises(ValueError, match="no answers"):
    nlg.score_nlg([], [])


@requires_java
@pytest.mark.slow
def test_streamed_meteor_equals_compute_score():
  # Enough answers that the replies overflow a pipe buffer while requests are still being sent.
  words = "the main image has an additional finding of edema pneumothorax nothing changed".split()
  gts = {i: [" ".join(words[(i + k) % len(words)] for k in range(12))] for i in range(2000)}
  res = {i: [" ".join(words[(2 * i + k) % len(words)] for k in range(i % 9))] for i in range(2000)}
  expected, _ = Meteor().compute_score(gts, res)
  assert nlg._meteor_score(gts, res, progress=False) == expected  # pylint: disable=protected-access


@requires_java
def test_one_meteor_process_serves_every_scoring(refs, preds):
  first = nlg.score_nlg(refs, preds)
  process = nlg._shared_meteor().meteor_p  # pylint: disable=protected-access
  assert process.poll() is None  # Left running for the next scoring.
  assert nlg.score_nlg(refs, preds)["meteor"] == first["meteor"]
  assert nlg.score_nlg(refs, refs)["meteor"] > 0.95
  assert nlg._shared_meteor().meteor_p is process  # pylint: disable=protected-access


@requires_java
def test_a_dead_meteor_process_is_replaced(refs, preds):
  expected = nlg.score_nlg(refs, preds)["meteor"]
  nlg.start_meteor()
  process = nlg._shared_meteor().meteor_p  # pylint: disable=protected-access
  process.kill()
  process.wait()
  assert nlg.score_nlg(refs, preds)["meteor"] == expected
  assert nlg._shared_meteor().meteor_p is not process  # pylint: disable=protected-access
