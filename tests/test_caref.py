"""CAREF grounder: batched pairs equal one-by-one decoding, constrained decoding, the grid."""

import numpy as np
import pytest

import vqa_fixture
from locvqa_jax import caref


@pytest.fixture(scope="module")
def pretrain(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("caref") / "pre")
  vqa_fixture.make_pretrain_workdir(workdir)
  return workdir


def _images(n):
  rng = np.random.default_rng(0)
  # Mixed sizes and layouts: resized to the run's resolution, [R, R, 1] accepted.
  return [rng.integers(0, 256, (32, 32), np.uint8), rng.integers(0, 256, (48, 48, 1), np.uint8),
          rng.integers(0, 256, (32, 32), np.uint8)][:n]


def test_batches_match_one_pair_at_a_time(pretrain):
  images, phrases = _images(3), ["edema", "left lower lung zone opacity", "edema"]
  batched = caref.Grounder(pretrain, batch_size=2, constrain_boxes=True)
  single = caref.Grounder(pretrain, batch_size=1, constrain_boxes=True)
  boxes = batched.locate_pairs(images, phrases)
  assert boxes.shape == (3, 4) and np.isfinite(boxes).all()  # constrained: always a box
  for i in range(3):
    np.testing.assert_allclose(single.locate_pairs([images[i]], [phrases[i]])[0], boxes[i],
                               atol=1e-6)


def test_constraint_default_follows_the_pretraining_run(pretrain):
  grounder = caref.Grounder(pretrain)
  assert grounder.constrain_boxes is False  # the fixture's run has no constrained evaluation
  assert grounder.settings()["template"] == "<caref> {phrase}"
  assert grounder.settings()["res"] == vqa_fixture.RES


def test_grid_and_free_decoding(pretrain):
  grounder = caref.Grounder(pretrain, batch_size=4)
  boxes = grounder.locate(_images(2), ["edema", "left lower lung zone opacity"])
  assert boxes.shape == (2, 2, 4)
  finite = boxes[np.isfinite(boxes)]
  assert ((finite >= 0) & (finite <= 1)).all()
  assert grounder.locate_pairs([], []).shape == (0, 4)
  with pytest.raises(ValueError, match="2 images but 1 phrases"):
    grounder.locate_pairs(_images(2), ["edema"])


def test_pretraining_workdir_of_a_vqa_run(pretrain):
  config = vqa_fixture.make_config("", "")
  with pytest.raises(ValueError, match="grounding needs --pretrain_workdir"):
    caref.pretrain_workdir_of(config)
  assert caref.pretrain_workdir_of(vqa_fixture.make_config(pretrain, "")) == pretrain
