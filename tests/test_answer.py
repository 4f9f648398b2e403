"""The answer command: letterboxed pair in, answer out; CAREF boxes for the named findings."""

import json

import numpy as np
import pytest
from PIL import Image

import vqa_fixture
from locvqa_jax import answer


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("answer")
  pre, vqa = str(root / "pre"), str(root / "vqa")
  vqa_fixture.make_pretrain_workdir(pre)
  vqa_fixture.make_vqa_workdir(vqa, pre)
  # Non-square images of different sizes: both are letterboxed to the run's resolution.
  main, ref = root / "main.jpg", root / "ref.jpg"
  Image.fromarray(np.full((60, 40), 200, np.uint8)).save(main)
  Image.fromarray(np.full((48, 64), 90, np.uint8)).save(ref)
  return pre, vqa, str(main), str(ref)


def test_load_image_letterboxes(runs):
  *_, main, _ = runs
  image = answer.load_image(main, 32)
  assert image.shape == (32, 32) and image.dtype == np.uint8
  assert image[:, 0].max() == 0 and image[16, 16] > 150  # Padded sides, content centred.


def test_answers_a_question(runs, capsys):
  _, vqa, main, ref = runs
  assert answer.main(["--workdir", vqa, "--main", main, "--reference", ref, "--question",
                      vqa_fixture.CORPUS[0], "--json"]) == 0
  out = json.loads(capsys.readouterr().out)
  assert out["question"] == vqa_fixture.CORPUS[0] and isinstance(out["answer"], str)


def test_grounding_draws_boxes_for_named_findings(runs, tmp_path, monkeypatch, capsys):
  _, vqa, main, ref = runs
  text = "the main image has additional findings of edema, and pneumothorax than the reference image."
  monkeypatch.setattr(answer, "answer", lambda *a, **k: text)
  out_png = str(tmp_path / "boxes.png")
  assert answer.main(["--workdir", vqa, "--main", main, "--reference", ref, "--question",
                      vqa_fixture.CORPUS[0], "--grounding", out_png, "--json"]) == 0
  out = json.loads(capsys.readouterr().out)
  assert [f["finding"] for f in out["findings"]] == ["edema", "pneumothorax"]
  assert all(f["direction"] == "added" for f in out["findings"])
  with Image.open(out_png) as im:
    assert im.size == (2 * vqa_fixture.RES, vqa_fixture.RES + 28)


def test_grounder_returns_boxes_or_nan(runs):
  pre, *_ = runs
  grounder = answer.Grounder(pre)
  images = [np.full((32, 32), 100, np.uint8), np.full((48, 48), 10, np.uint8)]
  boxes = grounder.locate(images, ["edema", "left lower lung zone opacity"])
  assert boxes.shape == (2, 2, 4)
  finite = boxes[np.isfinite(boxes)]
  assert ((finite >= 0) & (finite <= 1)).all()


def test_findings_in_answer():
  assert answer.findings_in_answer(vqa_fixture.ADDED) == [("edema", "added")]
  assert answer.findings_in_answer("nothing has changed.") == []
