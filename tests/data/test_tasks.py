"""Task sequences (CAP, AREF, GCAP, CAREF), phrase rules, report sections, leakage ids."""

import numpy as np
import pytest

from locvqa_jax import tokenizer as tokenizer_lib
from locvqa_jax.data import tasks

REPORT = (
    "                                 FINAL REPORT\n"
    " EXAMINATION:  CHEST (PA AND LAT)\n\n INDICATION:  ___ with cough\n\n"
    " FINDINGS:\n \n Small left pleural effusion.  No pneumothorax.\n \n"
    " IMPRESSION:\n \n Small left effusion.\n")


@pytest.fixture(scope="module")
def tok():
  corpus = ["small left pleural effusion.", "no pneumothorax.", "left costophrenic angle",
            "right lung", "small left effusion.", "the heart size is normal."] * 20
  return tokenizer_lib.train_tokenizer(corpus, vocab_size=2000)


@pytest.fixture
def cfg():
  return tasks.pretrain_input_config()


def test_region_names():
  assert len(tasks.REGION_NAMES) == 36 == len(set(tasks.REGION_NAMES))
  assert tasks.REGION_NAMES[0] == "right lung"
  assert tasks.REGION_NAMES[-1] == "left cardiophrenic angle"
  assert tasks.REGION_INDEX["cardiac silhouette"] == 25


def test_findings_impression():
  assert tasks.findings_impression(REPORT) == (
      "Small left pleural effusion. No pneumothorax. Small left effusion.")
  assert tasks.findings_impression(" IMPRESSION: \n No acute process.\n") == "No acute process."
  assert tasks.findings_impression(
      " FINDNGS: Clear lungs.\n IMPRESSON: \n Normal.\n RECOMMENDATION(S): None.") == (
          "Clear lungs. Normal.")
  assert tasks.findings_impression(" INDICATION: cough\n\n Heart is normal.\n  Lungs clear.") == (
      "Heart is normal. Lungs clear.")
  record = {"findings": b"Small effusion.", "impression": b"", "report": REPORT.encode()}
  assert tasks.cap_text(record) == "Small effusion."


def _sequence(out):
  n = int((out["text"] > 0).sum())
  return list(out["text"][:n]), list(out["mask_ar"][:n]), list(out["mask_loss"][:n])


def test_cap_sequence(tok, cfg):
  out = tasks.task_sequence("cap", tok, cfg, report="no pneumothorax.")
  text, ar, loss = _sequence(out)
  body = tok.encode("no pneumothorax.")
  assert text == [2, tok.task_ids["<cap>"], *body, 1]
  assert ar == loss == [0, 0] + [1] * (len(body) + 1)
  assert out["text"].shape == (196,) and out["text"].dtype == np.int32
  assert out["task_id"] == 0 and out["region_id"] == -1
  np.testing.assert_array_equal(out["box"], np.zeros(4))


def test_region_task_sequences(tok, cfg):
  box = np.array([0.5, 0.6, 0.9, 0.95], np.float32)
  kw = dict(phrase="small left pleural effusion.", bbox_name="left costophrenic angle", box=box)
  phrase, loc = tok.encode(kw["phrase"]), tok.box_to_ids(box)
  expected = {  # task: (task_id, prefix, suffix)
      "aref": (1, [tok.task_ids["<aref>"]], phrase + loc),
      "gcap": (2, [tok.task_ids["<gcap>"]], loc + phrase),
      "caref": (3, [tok.task_ids["<caref>"]] + phrase, loc),
  }
  for task, (task_id, prefix, suffix) in expected.items():
    out = tasks.task_sequence(task, tok, cfg, **kw)
    text, ar, loss = _sequence(out)
    assert text == [2, *prefix, *suffix, 1], task
    assert ar == loss == [0] * (1 + len(prefix)) + [1] * (len(suffix) + 1), task
    assert out["task_id"] == task_id and out["region_id"] == 15
    np.testing.assert_array_equal(out["box"], box)
  assert [tok.id_to_piece(i) for i in loc] == ["<loc0512>", "<loc0614>", "<loc0921>", "<loc0972>"]


def test_task_id_follows_config_order(tok, cfg):
  cfg.tasks = ("caref", "aref")
  out = tasks.task_sequence("aref", tok, cfg, phrase="right lung", bbox_name="right lung",
                            box=[0.1, 0.1, 0.5, 0.4])
  assert out["task_id"] == 1 and out["region_id"] == 0


def test_custom_template_and_errors(tok, cfg):
  cfg.templates.aref_suffix = "{loc} is {phrase}"
  out = tasks.task_sequence("aref", tok, cfg, phrase="right lung", box=[0.1, 0.1, 0.5, 0.4])
  text, _, _ = _sequence(out)
  assert text[2:6] == tok.box_to_ids([0.1, 0.1, 0.5, 0.4])
  assert tok.decode(text[6:]) == "is right lung"
  with pytest.raises(ValueError, match=r"templates.gcap_prefix.*unknown placeholder \{box\}"):
    tasks.check_templates({**tasks.DEFAULT_TEMPLATES, "gcap_prefix": "<gcap> {box}"}, tasks.TASKS)
  with pytest.raises(ValueError, match="unknown task 'vqa'"):
    tasks.check_templates(tasks.DEFAULT_TEMPLATES, ("cap", "vqa"))


def test_truncation_keeps_location_tokens(tok, cfg):
  cfg.max_phrase_len = 5
  box = [0.2, 0.3, 0.4, 0.5]
  long_phrase = " ".join(["small left pleural effusion."] * 30)
  for task in ("aref", "gcap", "caref"):
    out = tasks.task_sequence(task, tok, cfg, phrase=long_phrase, box=box)
    text, _, _ = _sequence(out)
    assert len(text) == 1 + 1 + 5 + 4 + 1
    assert tok.parse_box(text) is not None
    np.testing.assert_allclose(tok.parse_box(text), box, atol=1 / 2046 + 1e-6)
  cfg.max_caption_len = 10
  text, _, loss = _sequence(tasks.task_sequence("cap", tok, cfg, report=long_phrase * 5))
  assert len(text) == 1 + 1 + 10 + 1 and text[-1] == 1 and sum(loss) == 11


def test_too_long_for_text_len(tok, cfg):
  cfg.text_len = 8
  with pytest.raises(ValueError, match="exceeds text_len=8"):
    tasks.task_sequence("cap", tok, cfg, report="small left pleural effusion. no pneumothorax.")


def test_region_pairs_rules():
  record = {
      "phrases": {"text": [b"Small  left effusion.", b"Small  left effusion.", b"Gone."],
                  "bbox_name": [b"left lung", b"left costophrenic angle", b"right lung"],
                  "bbox": [np.array([0.2, 0.5, 0.8, 0.9]), np.array([0.7, 0.7, 0.9, 0.95]),
                           np.array([1.1, 0.1, 1.3, 0.4])]},
      "objects": {"bbox_name": [b"left lung", b"left costophrenic angle", b"right lung",
                                b"trachea", b"spine"],
                  "bbox": np.array([[0.2, 0.5, 0.8, 0.9], [0.7, 0.7, 0.9, 0.95],
                                    [1.1, 0.1, 1.3, 0.4], [-0.1, 0.45, 0.3, 0.55],
                                    [0.5, 0.5, 0.5, 0.6]], np.float32)},
  }
  pairs, dropped = tasks.region_pairs(record)
  assert [(p, n) for p, n, _ in pairs] == [
      ("Small left effusion.", "left lung"),
      ("Small left effusion.", "left costophrenic angle"),
      ("trachea", "trachea")]
  np.testing.assert_allclose(pairs[2][2], [0.0, 0.45, 0.3, 0.55])
  assert dropped == 2  # the phrase box below the frame, the zero-height spine box
  assert tasks.region_pairs({"phrases": {"text": [], "bbox_name": [], "bbox": []},
                             "objects": {"bbox_name": [], "bbox": []}}) == ([], 0)


def test_as_boxes_accepts_tfds_forms():
  import tensorflow_datasets as tfds
  want = np.array([[0.1, 0.2, 0.3, 0.4]], np.float32)
  for v in ([np.array([0.1, 0.2, 0.3, 0.4])], want, [tfds.features.BBox(0.1, 0.2, 0.3, 0.4)]):
    np.testing.assert_allclose(tasks.as_boxes(v), want)
  assert tasks.as_boxes([]).shape == (0, 4)
