"""The Medical-Diff-VQA difference grammar, question rules, KeyInfo records and row splits."""

import numpy as np
import pytest

from locvqa_jax.data.synthetic import vqa
from locvqa_jax.data.synthetic.truth import Finding

STANDARD = "what has changed compared to the reference image?"
EFFUSION_L = Finding("pleural effusion", side="left", zone="base", level="small")
EFFUSION_L_MOD = Finding("pleural effusion", side="left", zone="base", level="moderate")
ATELECTASIS_L = Finding("atelectasis", side="left", zone="lower", level="mild")
ATELECTASIS_L_MIN = Finding("atelectasis", side="left", zone="lower", level="minimal")
PNEUMOTHORAX = Finding("pneumothorax", side="right", zone="apical", level="small")
OPACITY = Finding("lung opacity", side="right", zone="upper", type="patchy")
CARDIOMEGALY = Finding("cardiomegaly", level="mild")
CARDIOMEGALY_MOD = Finding("cardiomegaly", level="moderate")
EDEMA = Finding("edema", side="bilateral", level="mild")
EDEMA_MOD = Finding("edema", side="bilateral", level="moderate")


def _diff(ref, main, seed=0):
  return vqa.difference(ref, main, np.random.default_rng(seed))


def test_nothing_has_changed_has_no_trailing_space():
  assert _diff([EFFUSION_L, OPACITY], [EFFUSION_L, OPACITY]) == (STANDARD, "nothing has changed.")
  assert _diff([], []) == (STANDARD, "nothing has changed.")


def test_one_added_finding():
  assert _diff([], [PNEUMOTHORAX]) == (
      STANDARD,
      "the main image has an additional finding of pneumothorax than the reference image. ")


def test_two_added_findings_take_the_oxford_comma():
  _, answer = _diff([], [PNEUMOTHORAX, OPACITY])
  assert answer in (
      "the main image has additional findings of pneumothorax, and lung opacity than the "
      "reference image. ",
      "the main image has additional findings of lung opacity, and pneumothorax than the "
      "reference image. ")


def test_many_added_and_missing_findings():
  _, answer = _diff([EFFUSION_L, CARDIOMEGALY], [PNEUMOTHORAX, OPACITY, EDEMA])
  added, missing = answer.split(". ")[:2]
  assert added.startswith("the main image has additional findings of ")
  items = added[len("the main image has additional findings of "):-len(
      " than the reference image")]
  names = items.split(", ")
  assert names[-1].startswith("and ") and len(names) == 3
  assert sorted(names[:-1] + [names[-1][4:]]) == ["edema", "lung opacity", "pneumothorax"]
  assert missing.startswith("the main image is missing the findings of ")
  assert answer.endswith(" than the reference image. ")


def test_one_missing_finding():
  assert _diff([OPACITY, EFFUSION_L], [EFFUSION_L])[1] == (
      "the main image is missing the finding of lung opacity than the reference image. ")


def test_added_order_is_random_but_seeded():
  answers = {_diff([], [PNEUMOTHORAX, OPACITY, EDEMA], seed)[1] for seed in range(20)}
  assert len(answers) > 1
  assert _diff([], [PNEUMOTHORAX, OPACITY, EDEMA], 5) == _diff([], [PNEUMOTHORAX, OPACITY, EDEMA],
                                                               5)


def test_level_change_at_one_location_asks_about_that_area():
  question, answer = _diff([EFFUSION_L], [EFFUSION_L_MOD])
  assert question == "what has changed in the left lung area?"
  assert answer == "the level of pleural effusion has changed from small to moderate. "
  question, _ = _diff([ATELECTASIS_L, OPACITY], [ATELECTASIS_L_MIN, OPACITY])
  assert question == "what has changed in the left lower lung area?"


def test_level_change_without_a_single_location_asks_the_standard_question():
  assert _diff([CARDIOMEGALY], [CARDIOMEGALY_MOD]) == (
      STANDARD, "the level of cardiomegaly has changed from mild to moderate. ")
  assert _diff([EDEMA], [EDEMA_MOD])[0] == STANDARD  # bilateral is excluded
  assert _diff([EFFUSION_L, ATELECTASIS_L], [EFFUSION_L_MOD, ATELECTASIS_L_MIN])[0] == STANDARD


def test_level_change_comes_before_added_and_missing():
  question, answer = _diff([CARDIOMEGALY, OPACITY], [CARDIOMEGALY_MOD, PNEUMOTHORAX])
  assert question == STANDARD
  assert answer == (
      "the level of cardiomegaly has changed from mild to moderate. "
      "the main image has an additional finding of pneumothorax than the reference image. "
      "the main image is missing the finding of lung opacity than the reference image. ")


def test_level_change_needs_both_levels():
  assert _diff([Finding("cardiomegaly")], [CARDIOMEGALY])[1] == "nothing has changed."


def test_pneumonia_and_infection_are_the_same_finding():
  pneumonia = Finding("pneumonia", side="left", zone="lower")
  infection = Finding("infection", side="left", zone="lower")
  assert _diff([infection], [pneumonia])[1] == "nothing has changed."
  assert _diff([pneumonia], [infection])[1] == "nothing has changed."
  assert "missing the finding of infection" in _diff([infection], [])[1]


@pytest.mark.parametrize("items, text", [
    (["a"], "a"), (["a", "b"], "a, and b"), (["a", "b", "c"], "a, b, and c")])
def test_join_items(items, text):
  assert vqa.join_items(items) == text


def test_location_words_use_the_diff_vqa_vocabulary():
  assert vqa.location_words(EFFUSION_L) == ["left"]
  assert vqa.location_words(PNEUMOTHORAX) == ["right", "apical"]
  assert vqa.location_words(Finding("atelectasis", "bilateral", "base")) == ["bibasilar"]
  assert vqa.location_words(Finding("lung opacity", "left", "mid")) == ["left", "middle", "lung"]
  assert vqa.location_words(Finding("fracture", "right", "mid")) == ["right", "rib"]
  assert vqa.location_words(CARDIOMEGALY) is None


def _questions(main, ref=(), view="PA", seed=0, negated=()):
  return vqa.pair_questions(view, main, list(ref), list(negated), np.random.default_rng(seed),
                            p_ap_view_question=0.05)


def test_pair_questions_order_uniqueness_and_answers():
  for seed in range(50):
    rows = _questions([EFFUSION_L_MOD, OPACITY, CARDIOMEGALY], [EFFUSION_L], seed=seed)
    types = [t for t, _, _ in rows]
    assert types == sorted(types, key=vqa.QUESTION_TYPES.index)
    assert len(set(types)) == len(types) and types[-1] == "difference"
    qa = {t: (q, a) for t, q, a in rows}
    if qa["abnormality"][0] == "what abnormalities are seen in this image?":
      assert qa["abnormality"][1] == "pleural effusion, lung opacity, cardiomegaly"
    if "location" in qa and qa["location"][0].startswith("where"):
      assert qa["location"][1] in ("left area", "right upper lung area")
    if qa["presence"][0] == "is there pleural effusion in the right area?":
      assert qa["presence"][1] == "no"
    assert qa["level"][1] in ("moderate", "mild")
    assert qa["type"] == ("what type is the lung opacity?", "patchy")


def test_presence_answers_match_the_truth():
  present = {"pleural effusion", "lung opacity"}
  asked = set()
  for seed in range(60):
    _, question, answer = _questions([EFFUSION_L, OPACITY], seed=seed)[1]
    asked.add(question)
    for prefix, suffix in (("is there evidence of ", " in this image?"), ("is there ", "?")):
      name = question[len(prefix):-len(suffix)]
      if question.startswith(prefix) and question.endswith(suffix) and " in the " not in name:
        assert answer == ("yes" if name in present else "no"), question
        assert name not in ("consolidation", "pneumonia", "blunting of the costophrenic angle")
        break
  assert ("is there pleural effusion in the left lung area?" in asked
          or "is there lung opacity in the right upper lung area?" in asked)
  assert "is the lung opacity bilateral?" in asked or "is the pleural effusion bilateral?" in asked


def test_normal_study_gets_no_abnormality_and_no_location_questions():
  rows = _questions([], seed=1)
  assert rows[0] == ("abnormality", "is there evidence of any abnormalities in this image?", "no")
  assert not {"location", "level", "type"} & {t for t, _, _ in rows}


def test_ap_images_rarely_get_a_view_question():
  n_ap = sum(any(t == "view" for t, _, _ in _questions([], view="AP", seed=s)) for s in range(400))
  n_pa = sum(any(t == "view" for t, _, _ in _questions([], view="PA", seed=s)) for s in range(50))
  assert 4 <= n_ap <= 40 and n_pa == 50


def test_key_info_record():
  record = vqa.key_info(12345678, 56789012, [EFFUSION_L, OPACITY], ["pneumothorax"])
  assert record["study_id"] == "56789012" and record["subject_id"] == "12345678"
  assert record["no_entity"] == ["pneumothorax"]
  assert record["entity"]["pleural effusion"]["level"] == ["small"]
  assert record["entity"]["lung opacity"]["location"] == ["right", "upper", "lung"]
  assert record["entity"]["lung opacity"]["type"] == ["patchy"]
  assert record["entity"]["lung opacity"]["post_location2"] is None


@pytest.mark.parametrize("n, sizes", [(10, (8, 1, 1)), (7, (6, 1, 0)), (1, (1, 0, 0)),
                                      (700703, (560563, 70070, 70070))])
def test_split_by_row_index(n, sizes):
  splits = vqa.assign_splits(n)
  assert (splits.count("train"), splits.count("val"), splits.count("test")) == sizes
  assert splits == sorted(splits, key=["train", "val", "test"].index)
