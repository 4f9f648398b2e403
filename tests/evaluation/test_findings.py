"""Tests of the difference-answer parser and the finding-level metrics."""

import pytest

from locvqa_jax.evaluation import findings
from locvqa_jax.evaluation.findings import ADDED, LEVEL_CHANGED, MISSING

ADD1 = "the main image has an additional finding of pneumothorax than the reference image. "
ADD2 = ("the main image has additional findings of consolidation, and pneumonia than the "
        "reference image. ")
ADD_MANY = ("the main image has additional findings of fracture, lung opacity, and pleural "
            "effusion than the reference image. ")
MISS1 = "the main image is missing the finding of edema than the reference image. "
MISS_MANY = ("the main image is missing the findings of pleural effusion, pneumothorax, and "
             "atelectasis than the reference image. ")
LEVEL = "the level of pleural effusion has changed from small to moderate to large. "
NOTHING = "nothing has changed."


def items(text):
  return set(findings.parse_difference(text).items)


def test_thirty_official_names():
  assert len(findings.FINDINGS) == 30
  assert len(set(findings.FINDINGS)) == 30


@pytest.mark.parametrize("text,expected", [
    (ADD1, {("pneumothorax", ADDED)}),
    (ADD2, {("consolidation", ADDED), ("pneumonia", ADDED)}),
    (ADD_MANY, {("fracture", ADDED), ("lung opacity", ADDED), ("pleural effusion", ADDED)}),
    (MISS1, {("edema", MISSING)}),
    (MISS_MANY, {("pleural effusion", MISSING), ("pneumothorax", MISSING),
                 ("atelectasis", MISSING)}),
    (LEVEL, {("pleural effusion", LEVEL_CHANGED)}),
    (NOTHING, set()),
    # Trailing space missing, final period missing, extra spaces, upper case.
    (ADD1.strip(), {("pneumothorax", ADDED)}),
    (ADD1.strip().rstrip("."), {("pneumothorax", ADDED)}),
    ("The  main image has an additional finding of   Pneumothorax than the reference image.",
     {("pneumothorax", ADDED)}),
    # Two items without the Oxford comma, as a model might write them.
    ("the main image has additional findings of edema and hernia than the reference image. ",
     {("edema", ADDED), ("hernia", ADDED)}),
    # Multi-word names containing `of the`.
    ("the main image has additional findings of tortuosity of the descending aorta , and "
     "blunting of the costophrenic angle than the reference image. ",
     {("tortuosity of the descending aorta", ADDED),
      ("blunting of the costophrenic angle", ADDED)}),
    # infection and pneumonia are one finding.
    ("the main image is missing the finding of infection than the reference image. ",
     {("pneumonia", MISSING)}),
])
def test_parse_forms(text, expected):
  parsed = findings.parse_difference(text)
  assert set(parsed.items) == expected
  assert parsed.unparsed == ()


def test_parse_combined_sentences():
  text = LEVEL + "the level of edema has changed from mild to severe. " + ADD2 + MISS_MANY
  assert items(text) == {
      ("pleural effusion", LEVEL_CHANGED), ("edema", LEVEL_CHANGED),
      ("consolidation", ADDED), ("pneumonia", ADDED),
      ("pleural effusion", MISSING), ("pneumothorax", MISSING), ("atelectasis", MISSING)}


def test_nothing_changed_flag():
  parsed = findings.parse_difference(NOTHING)
  assert parsed.nothing_changed and not parsed.items and not parsed.unparsed
  assert not findings.parse_difference(ADD1).nothing_changed


@pytest.mark.parametrize("text,unparsed", [
    ("", ()),
    ("the cat sat on the mat.", ("the cat sat on the mat",)),
    ("the main image has an additional finding of unicorn than the reference image. ",
     ("unicorn",)),
    ("the level of unicorn has changed from small to large. ", ("unicorn",)),
    ("the main image has additional findings of edema, unicorn, and hernia than the reference "
     "image. ", ("unicorn",)),
    ("the main image has an additional finding of than the reference image",
     ("the main image has an additional finding of than the reference image",)),
    ("... ,,, !!!", (",,, !!!",)),
])
def test_garbled_text_is_counted_not_raised(text, unparsed):
  parsed = findings.parse_difference(text)
  assert parsed.unparsed == unparsed
  if "edema" in text:
    assert set(parsed.items) == {("edema", ADDED), ("hernia", ADDED)}
  else:
    assert not parsed.items


def test_perfect_predictor_scores_one():
  refs = [ADD1, ADD2 + MISS1, LEVEL, NOTHING, MISS_MANY]
  m = findings.finding_metrics(refs, refs)
  assert m["finding_precision"] == m["finding_recall"] == m["finding_f1"] == 1.0
  assert m["finding_tp"] == 1 + 3 + 1 + 0 + 3
  assert m["false_change_rate"] == 0.0


def test_micro_counts_and_nothing_pairs_add_no_items():
  refs = [ADD2, NOTHING, NOTHING, MISS1]
  preds = [ADD1 + "the main image has an additional finding of consolidation than the reference "
           "image. ", NOTHING, MISS1, MISS1 + LEVEL]
  m = findings.finding_metrics(refs, preds)
  # pair 0: tp consolidation, fp pneumothorax, fn pneumonia; pair 1: nothing; pair 2: fp edema;
  # pair 3: tp edema, fp pleural effusion level.
  assert (m["finding_tp"], m["finding_fp"], m["finding_fn"]) == (2, 3, 1)
  assert m["finding_precision"] == pytest.approx(2 / 5)
  assert m["finding_recall"] == pytest.approx(2 / 3)
  assert m["finding_f1"] == pytest.approx(2 * 2 / (2 * 2 + 3 + 1))
  assert m["by_direction"][ADDED] == {"precision": 0.5, "recall": 0.5, "f1": 0.5,
                                      "tp": 1, "fp": 1, "fn": 1}


def test_false_change_rate():
  refs = [NOTHING, NOTHING, NOTHING, NOTHING, ADD1]
  preds = [NOTHING, ADD1, "garbled output", LEVEL + MISS1, NOTHING]
  m = findings.finding_metrics(refs, preds)
  assert m["nothing_changed_references"] == 4
  assert m["false_changes"] == 2
  assert m["false_change_rate"] == 0.5
  assert m["unparsed_predictions"] == 1


def test_all_nothing_changed_gives_undefined_scores():
  m = findings.finding_metrics([NOTHING] * 3, [NOTHING] * 3)
  assert m["finding_precision"] is None and m["finding_f1"] is None
  assert m["false_change_rate"] == 0.0


def test_length_mismatch_raises():
  with pytest.raises(ValueError, match="2 references but 1 predictions"):
    findings.finding_metrics([NOTHING, NOTHING], [NOTHING])
