"""The grounding metric group: IoU maths, perfect and image-blind boxes, skipped records."""

import numpy as np
import pytest

from locvqa_jax.evaluation import format_metrics
from locvqa_jax.evaluation import grounding
from locvqa_jax.evaluation import records
from locvqa_jax.evaluation import score_predictions

DIFF_Q = "what has changed compared to the reference image?"
LEFT, RIGHT = [0.2, 0.5, 0.8, 0.9], [0.2, 0.1, 0.8, 0.5]


def record(entries, rid=0, **kw):
  return {"id": rid, "question_type": "difference", "question": DIFF_Q,
          "reference": "the main image has an additional finding of edema than the reference "
                       "image. ", "prediction": kw.pop("prediction", "x"), "study_id": "1",
          "ref_id": "2", "grounding": entries, **kw}


def entry(box, truth, mean_box=None, finding="edema", direction="added"):
  return {"finding": finding, "direction": direction, "image": "main", "box": box,
          "truth": truth, "mean_box": mean_box}


def test_box_iou_hand_cases():
  a = np.array([[0, 0, 1, 1], [0, 0, 0.5, 0.5], [0, 0, 1, 1], [0.2, 0.2, 0.2, 0.6],
                [0, 0, 0.5, 1]], np.float32)
  b = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0.5, 0.5, 1.5, 1.5], [0.2, 0.2, 0.4, 0.6],
                [0.5, 0, 1, 1]], np.float32)
  # Same box; nested quarter; overlap 0.25 of union 1.75; zero-height box; touching edges.
  np.testing.assert_allclose(grounding.box_iou(a, b), [1.0, 0.25, 0.25 / 1.75, 0.0, 0.0],
                             rtol=1e-6)


def test_inverted_box_scores_zero():
  assert grounding.best_iou([0.8, 0.5, 0.2, 0.9], [LEFT]) == 0.0


def test_best_iou_is_the_max_over_true_regions():
  # Half of LEFT (same rows, the left half of its columns): IoU 0.5 with LEFT, 0 with RIGHT.
  half = [0.2, 0.5, 0.8, 0.7]
  assert grounding.best_iou(half, [RIGHT, LEFT]) == pytest.approx(0.5)
  assert grounding.best_iou(None, [LEFT]) == 0.0


def test_perfect_boxes_score_one_and_the_blind_baseline_less():
  mean = [0.2, 0.3, 0.8, 0.7]  # between the lungs, as a box ignoring the image would be
  preds = [record([entry(LEFT, [LEFT, RIGHT], mean), entry(RIGHT, [RIGHT], mean)], 0),
           record([entry(RIGHT, [LEFT, RIGHT], mean, "pleural effusion", "missing")], 1)]
  out = grounding.grounding_metrics(records.as_predictions(preds))
  assert out["n"] == 2 and out["n_named"] == 3 and out["n_boxes"] == 3
  assert out["mean_iou"] == pytest.approx(1.0) and out["acc50"] == 1.0
  # mean vs LEFT: rows equal, columns overlap 0.5..0.7 of union 0.3..0.9 -> 1/3.
  assert out["baseline_mean_iou"] == pytest.approx(1 / 3)
  assert out["baseline_acc50"] == 0.0
  assert out["by_direction"]["missing"]["n_boxes"] == 1
  assert out["by_finding"]["edema"]["mean_iou"] == pytest.approx(1.0)
  assert out["settings"]["match"] == "max IoU over the true regions"


def test_no_truth_is_excluded_and_a_missing_box_scores_zero():
  preds = [record([entry(LEFT, []), entry(None, [LEFT]), entry(LEFT, [LEFT])])]
  out = grounding.grounding_metrics(records.as_predictions(preds))
  assert out["n_named"] == 3 and out["no_truth"] == 1 and out["n_boxes"] == 2
  assert out["no_box"] == 1 and out["mean_iou"] == pytest.approx(0.5)
  assert out["baseline_no_box"] == 2 and out["baseline_mean_iou"] == 0.0


def test_no_scored_boxes_gives_none():
  out = grounding.grounding_metrics(records.as_predictions([record([])]))
  assert out["n_boxes"] == 0 and out["mean_iou"] is None and out["baseline_acc50"] is None


def test_records_without_grounding_are_skipped():
  plain = {k: v for k, v in record([]).items() if k != "grounding"}
  metrics = score_predictions([plain, dict(plain, id=1)], groups=["findings", "grounding"])
  assert "grounding" not in metrics["overall"] and "findings" in metrics["overall"]
  metrics = score_predictions([plain, record([entry(LEFT, [LEFT], RIGHT)], 1)],
                              groups=["findings", "grounding"])
  scores = metrics["overall"]["grounding"]
  assert scores["n"] == 1 and scores["mean_iou"] == pytest.approx(1.0)
  assert metrics["per_question_type"]["difference"]["grounding"] == scores
  assert metrics["settings"]["grounding"]["acc_threshold"] == 0.5
  table = format_metrics(metrics)
  assert "Grounding of named findings (boxes scored=1, no truth=0" in table
  assert "CAREF boxes" in table and "mean training box" in table


def test_grounding_on_other_question_types_is_ignored():
  other = dict(record([entry(LEFT, [LEFT])]), question_type="presence",
               question="is there edema?")
  assert not grounding.has_grounding(records.as_predictions([other])[0])


@pytest.mark.parametrize("bad, message", [
    ({"finding": "edema", "box": LEFT}, "no 'truth' boxes; score with --data_dir"),
    ({"box": LEFT, "truth": []}, "expected an object with 'finding' and 'box'"),
    (entry([0.1, 0.2], [LEFT]), "'box' must be null or 4 numbers"),
    (entry(LEFT, [[0, 0, 1]]), "'truth' must be null or 4 numbers"),
])
def test_malformed_entries_name_the_record(bad, message):
  preds = records.as_predictions([record([bad], rid=7)])
  with pytest.raises(records.PredictionsFormatError,
                     match=r"record 7 grounding\[0\]: " + message):
    grounding.grounding_metrics(preds)


def test_grounding_must_be_a_list():
  with pytest.raises(records.PredictionsFormatError, match="'grounding' must be a list"):
    grounding.grounding_metrics(records.as_predictions([record({"box": LEFT})]))
