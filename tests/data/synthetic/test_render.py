"""Tests of the synthetic radiograph renderer: determinism, geometry of the 36 regions, findings
drawn where and as large as the truth says, views."""

import dataclasses

import numpy as np
import pytest

from locvqa_jax.data.synthetic.render import (
    REGION_NAMES, RENDER_PRESETS, RenderKnobs, render, sample_acquisition, sample_anatomy)
from locvqa_jax.data.synthetic.truth import DRAWABLE_DEVICES, DRAWABLE_FINDINGS, Device, Finding

EASY = RENDER_PRESETS["easy"]
REALISTIC = RENDER_PRESETS["realistic"]


def _study(seed, view="PA", size=256, knobs=EASY):
  rng = np.random.default_rng(seed)
  anatomy = sample_anatomy(rng, knobs)
  acq = sample_acquisition(rng, knobs, view, size)
  return anatomy, acq


def _draw(anatomy, acq, findings=(), devices=(), seed=0, knobs=EASY):
  return render(anatomy, acq, list(findings), list(devices), np.random.default_rng(seed), knobs)


def _centre(box):
  x1, y1, x2, y2 = box
  return (x1 + x2) / 2, (y1 + y2) / 2


def _mean_in(image, box):
  x1, y1, x2, y2 = (int(round(c)) for c in box)
  h, w = image.shape
  patch = image[max(0, y1):min(h, y2), max(0, x1):min(w, x2)]
  return float(patch.mean())


def _area(box):
  return (box[2] - box[0]) * (box[3] - box[1])


def test_same_rng_gives_identical_image_and_boxes():
  anatomy, acq = _study(1, "AP")
  findings = [Finding("pleural effusion", "left", "base", "small", None, 0.4)]
  a = _draw(anatomy, acq, findings, [Device("endotracheal tube")], seed=5)
  b = _draw(anatomy, acq, findings, [Device("endotracheal tube")], seed=5)
  np.testing.assert_array_equal(a.image, b.image)
  assert a.region_boxes == b.region_boxes
  assert a.finding_boxes == b.finding_boxes
  again = sample_anatomy(np.random.default_rng(1), EASY)
  assert again == anatomy
  np.testing.assert_array_equal(again.vessels, anatomy.vessels)


@pytest.mark.parametrize("view", ["PA", "AP", "LATERAL"])
@pytest.mark.parametrize("size", [128, 512])
def test_image_shape_matches_acquisition(view, size):
  anatomy, acq = _study(2, view, size, REALISTIC)
  out = _draw(anatomy, acq, knobs=REALISTIC)
  assert out.image.dtype == np.uint8
  assert out.image.shape == (acq.rows, acq.cols)
  assert max(acq.rows, acq.cols) == size
  assert acq.view == view
  # Equalised look: black background, bright bone, a wide spread of grey levels.
  assert out.image.min() < 20 and out.image.max() > 235
  assert out.image.std() > 40


def test_large_image_renders():
  anatomy, acq = _study(3, "PA", 1024)
  out = _draw(anatomy, acq, [Finding("pneumothorax", "right", "apical", "small", None, 0.5)])
  assert out.image.shape == (acq.rows, acq.cols)


def test_landscape_and_portrait_both_occur():
  knobs = dataclasses.replace(EASY, landscape_prob_ap=0.5)
  shapes = {sample_acquisition(np.random.default_rng(s), knobs, "AP", 300).rows > 299
            for s in range(20)}
  assert shapes == {True, False}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("knobs", [EASY, REALISTIC], ids=["easy", "realistic"])
def test_region_boxes_are_anatomically_placed(seed, knobs):
  anatomy, acq = _study(seed, "AP" if seed % 2 else "PA", 320, knobs)
  boxes = _draw(anatomy, acq, knobs=knobs).region_boxes
  assert list(boxes) == list(REGION_NAMES) and len(boxes) == 36
  for name, (x1, y1, x2, y2) in boxes.items():
    assert x2 > x1 and y2 > y1, name
  c = {name: _centre(box) for name, box in boxes.items()}
  # Radiological convention: the patient's left lung is on the image's right.
  assert c["left lung"][0] > c["spine"][0] > c["right lung"][0]
  if knobs is EASY:
    assert c["left lung"][0] > acq.cols / 2 > c["right lung"][0]
  for side in ("left", "right"):
    upper, mid, lower = (c[f"{side} {z} lung zone"] for z in ("upper", "mid", "lower"))
    assert upper[1] < mid[1] < lower[1]
    assert c[f"{side} apical zone"][1] < upper[1]
    assert boxes[f"{side} apical zone"][1] <= boxes[f"{side} upper lung zone"][1] + 1
    assert upper[1] < c[f"{side} hilar structures"][1] < lower[1]
    assert c[f"{side} costophrenic angle"][1] > mid[1]
  assert c["left costophrenic angle"][0] > c["left hilar structures"][0]
  assert c["right costophrenic angle"][0] < c["right hilar structures"][0]
  # The heart bulges to the image's right; trachea and carina are midline and above the heart.
  heart = boxes["cardiac silhouette"]
  assert heart[2] - c["spine"][0] > c["spine"][0] - heart[0]
  assert c["right lung"][0] < c["cardiac silhouette"][0] < c["left lung"][0]
  assert c["trachea"][1] < c["carina"][1] < c["cardiac silhouette"][1]
  assert c["abdomen"][1] > c["cardiac silhouette"][1]
  assert c["right clavicle"][0] < c["left clavicle"][0]


def test_region_boxes_follow_rotation_and_shift():
  anatomy, acq = _study(4, "PA", 256)
  base = _draw(anatomy, acq).region_boxes
  moved = _draw(anatomy, dataclasses.replace(
      acq, centre=(acq.centre[0] + 20, acq.centre[1] - 10))).region_boxes
  for name in REGION_NAMES:
    np.testing.assert_allclose(np.array(moved[name]) - base[name], [20, -10, 20, -10], atol=1e-6)
  turned = _draw(anatomy, dataclasses.replace(acq, angle=np.deg2rad(8))).region_boxes
  # Turning clockwise on screen lowers the patient's left (image right) side.
  assert _centre(turned["left lung"])[1] - _centre(turned["right lung"])[1] > \
      _centre(base["left lung"])[1] - _centre(base["right lung"])[1] + 5


def test_effusion_brightens_its_lower_zone_only():
  anatomy, acq = _study(5, "PA", 256)
  clean = _draw(anatomy, acq)
  wet = _draw(anatomy, acq, [Finding("pleural effusion", "left", "base", "moderate", None, 0.6)])
  left = _mean_in(wet.image, clean.region_boxes["left lower lung zone"]) - _mean_in(
      clean.image, clean.region_boxes["left lower lung zone"])
  right = _mean_in(wet.image, clean.region_boxes["right lower lung zone"]) - _mean_in(
      clean.image, clean.region_boxes["right lower lung zone"])
  assert left > 15
  assert abs(right) < left / 3
  (box,) = wet.finding_boxes[0]
  assert _centre(box)[0] > acq.cols / 2


def test_pneumothorax_darkens_the_apex():
  anatomy, acq = _study(6, "PA", 256)
  clean = _draw(anatomy, acq)
  ptx = _draw(anatomy, acq, [Finding("pneumothorax", "right", "apical", "moderate", None, 0.6)])
  apex = clean.region_boxes["right apical zone"]
  assert _mean_in(ptx.image, apex) < _mean_in(clean.image, apex) - 3
  (box,) = ptx.finding_boxes[0]
  assert _centre(box)[0] < acq.cols / 2
  assert box[1] < clean.region_boxes["right mid lung zone"][1]


def _heart_ratio(boxes):
  heart = boxes["cardiac silhouette"]
  chest = boxes["left lung"][2] - boxes["right lung"][0]
  return (heart[2] - heart[0]) / chest


def test_ap_magnifies_the_heart():
  anatomy, pa = _study(7, "PA", 256)
  ap = dataclasses.replace(pa, view="AP", heart_magnification=1.15)
  assert _heart_ratio(_draw(anatomy, ap).region_boxes) > 1.08 * _heart_ratio(
      _draw(anatomy, pa).region_boxes)
  low, high = EASY.ap_heart_magnification
  for seed in range(5):
    assert low <= sample_acquisition(np.random.default_rng(seed), EASY, "AP", 256
                                     ).heart_magnification <= high
    assert sample_acquisition(np.random.default_rng(seed), EASY, "PA", 256
                              ).heart_magnification == 1.0


def test_cardiomegaly_crosses_half_the_thorax_on_pa():
  for seed in range(4):
    anatomy, acq = _study(seed, "PA", 256, REALISTIC)
    acq = dataclasses.replace(acq, angle=0.0)
    normal = _draw(anatomy, acq, knobs=REALISTIC).region_boxes
    big = _draw(anatomy, acq, [Finding("cardiomegaly", None, None, "mild", None, 0.1)],
                knobs=REALISTIC)
    assert _heart_ratio(normal) < 0.5 < _heart_ratio(big.region_boxes)
    assert big.finding_boxes[0] == [big.region_boxes["cardiac silhouette"]]


@pytest.mark.parametrize("name,side,zone", [
    ("pleural effusion", "right", "base"), ("pneumothorax", "left", "apical"),
    ("lung opacity", "right", "mid"), ("consolidation", "left", "lower"),
    ("atelectasis", "right", "lower"), ("edema", "bilateral", None),
    ("cardiomegaly", None, None)])
def test_severity_grows_the_drawn_area(name, side, zone):
  anatomy, acq = _study(8, "PA", 256)
  areas = []
  for sev in (0.15, 0.5, 0.9):
    out = _draw(anatomy, acq, [Finding(name, side, zone, None, None, sev)])
    areas.append(sum(_area(b) for b in out.finding_boxes[0]))
  assert areas[0] < areas[1] < areas[2], areas


def test_every_drawable_finding_and_device_is_drawn_where_it_says():
  anatomy, acq = _study(9, "PA", 256)
  clean = _draw(anatomy, acq)
  for name in DRAWABLE_FINDINGS:
    side = None if name in ("cardiomegaly", "enlargement of the cardiac silhouette") else "left"
    out = _draw(anatomy, acq, [Finding(name, side, None, None, None, 0.7)])
    assert out.finding_boxes[0], name
    assert np.abs(out.image.astype(int) - clean.image).mean() > 0.05, name
    if side == "left":
      for box in out.finding_boxes[0]:
        assert _centre(box)[0] > _centre(clean.region_boxes["spine"])[0], name
  bilateral = _draw(anatomy, acq, [Finding("edema", "bilateral", None, None, None, 0.6)])
  assert len(bilateral.finding_boxes[0]) == 2
  for name in DRAWABLE_DEVICES:
    out = _draw(anatomy, acq, devices=[Device(name)])
    assert np.abs(out.image.astype(int) - clean.image).mean() > 0.05, name


def test_persistent_finding_keeps_its_place_across_studies():
  anatomy, acq = _study(10, "PA", 256)
  f = Finding("consolidation", "right", "lower", "moderate", "patchy", 0.6)
  first = _draw(anatomy, acq, [f], seed=1)
  second = _draw(anatomy, acq, [f, Finding("granuloma", "left", "upper")], seed=2)
  assert first.finding_boxes[0] == second.finding_boxes[0]


def test_lateral_view_has_no_boxes():
  anatomy, acq = _study(11, "LATERAL", 256)
  out = _draw(anatomy, acq, [Finding("pleural effusion", "left", "base", None, None, 0.5),
                             Finding("granuloma", "right", "upper")], [Device("enteric tube")])
  assert out.region_boxes == {}
  assert out.finding_boxes == [[], []]
  assert out.image.shape == (acq.rows, acq.cols) and out.image.std() > 30


def test_bad_inputs_fail_loudly():
  anatomy, acq = _study(12, "PA", 128)
  with pytest.raises(ValueError, match="not drawable"):
    _draw(anatomy, acq, [Finding("nodule", "left", "upper")])
  with pytest.raises(ValueError, match="severity"):
    _draw(anatomy, acq, [Finding("atelectasis", "left", "lower", severity=1.5)])
  with pytest.raises(ValueError, match="zone"):
    _draw(anatomy, acq, [Finding("atelectasis", "left", "middle")])
  with pytest.raises(ValueError, match="device name"):
    _draw(anatomy, acq, devices=[Device("chest tube")])
  lateral = dataclasses.replace(acq, view="LATERAL")
  with pytest.raises(ValueError, match="device name"):
    _draw(anatomy, lateral, devices=[Device("chest tube")])
  with pytest.raises(ValueError, match="not drawable"):
    _draw(anatomy, lateral, [Finding("nodule", "left", "upper")])
  with pytest.raises(ValueError, match="view"):
    sample_acquisition(np.random.default_rng(0), EASY, "LL", 256)
  with pytest.raises(ValueError, match="image_size"):
    sample_acquisition(np.random.default_rng(0), EASY, "PA", 16)
  with pytest.raises(ValueError, match="RenderKnobs.noise"):
    RenderKnobs(noise=-1.0)


def test_random_combinations_render_with_valid_boxes():
  rng = np.random.default_rng(0)
  zones = [None, "apical", "upper", "mid", "lower", "base"]
  types = [None, "patchy", "ground-glass", "interstitial", "focal", "multifocal", "dense",
           "plate-like", "linear", "compressive", "layering"]
  for i in range(30):
    knobs = REALISTIC if i % 2 else EASY
    anatomy, acq = _study(100 + i, ["PA", "AP", "LATERAL"][i % 3], 128, knobs)
    names = rng.choice(DRAWABLE_FINDINGS, size=int(rng.integers(1, 5)), replace=False)
    findings = [Finding(str(n), [None, "left", "right", "bilateral"][int(rng.integers(4))],
                        zones[int(rng.integers(6))], None, types[int(rng.integers(11))],
                        float(rng.random())) for n in names]
    devices = [Device(str(n)) for n in rng.choice(DRAWABLE_DEVICES, size=int(rng.integers(3)),
                                                   replace=False)]
    out = _draw(anatomy, acq, findings, devices, seed=i, knobs=knobs)
    assert out.image.shape == (acq.rows, acq.cols)
    assert len(out.finding_boxes) == len(findings)
    for f, boxes in zip(findings, out.finding_boxes):
      if acq.view != "LATERAL" and f.side == "bilateral":
        assert len(boxes) == 2 or (f.name in ("cardiomegaly",
                                              "enlargement of the cardiac silhouette")), f
      for x1, y1, x2, y2 in boxes:
        assert x2 > x1 and y2 > y1, f
        assert -acq.cols < x1 < 2 * acq.cols and -acq.rows < y1 < 2 * acq.rows, f
