"""Per-patient ground truth: study counts, views, finding evolution and its consistency."""

import dataclasses

import numpy as np
import pytest

from locvqa_jax.data.synthetic import presets, timeline, vqa
from locvqa_jax.data.synthetic.truth import DRAWABLE_FINDINGS, Finding

KNOBS = presets.PRESETS["realistic"].timeline
LEVEL_WORDS = {"moderately", "moderate", "acute", "mildly", "mild", "small", "severe",
               "moderate to large", "moderate to severe", "mild to moderate", "minimal", "subtle",
               "massive", "minimally", "increasing", "decreasing", "minor"}
TYPE_WORDS = {"interstitial", "layering", "dense", "parenchymal", "compressive", "obstructive",
              "linear", "plate-like", "patchy", "ground-glass", "calcified", "scattered", "focal",
              "multifocal", "multi-focal"}


def _patients(n=200, knobs=KNOBS, seed=0):
  return [timeline.sample_patient(np.random.default_rng([seed, i]), knobs, i, 10000000 + i,
                                  list(range(50000000 + 10 * i, 50000000 + 10 * i + 5)))
          for i in range(n)]


def test_same_generator_state_gives_the_same_patient():
  assert _patients(5) == _patients(5)
  assert _patients(5) != _patients(5, seed=1)


def test_studies_views_and_dates():
  for p in _patients():
    assert 2 <= len(p.studies) <= 5
    assert [s.index for s in p.studies] == list(range(len(p.studies)))
    dates = [s.when.date() for s in p.studies]
    assert dates == sorted(dates) and len(set(dates)) == len(dates)
    assert all(2100 <= s.when.year <= 2200 for s in p.studies)
    assert all(s.view in ("PA", "AP") for s in p.studies)
    assert len({s.study_id for s in p.studies}) == len(p.studies)
    assert len({s.devices for s in p.studies}) == 1, "devices are fixed per patient"
    assert p.gender in ("F", "M") and p.age_decile.endswith("0")


def test_findings_use_the_vocabularies_and_one_name_per_study():
  for p in _patients():
    for s in p.studies:
      names = [f.name for f in s.findings]
      assert len(names) == len(set(names)) <= KNOBS.max_findings
      assert not {"cardiomegaly", "enlargement of the cardiac silhouette"} <= set(names)
      for f in s.findings:
        assert f.name in DRAWABLE_FINDINGS
        assert f.level is None or f.level in LEVEL_WORDS
        assert f.type is None or f.type in TYPE_WORDS
        assert 0.0 < f.severity < 1.0


def test_a_finding_keeps_its_place_and_look_across_studies():
  """Diff-VQA compares by name: same name must mean same side/zone/type, same level same size."""
  for p in _patients():
    seen = {}
    for s in p.studies:
      for f in s.findings:
        if f.name in seen:
          old = seen[f.name]
          assert (f.side, f.zone, f.type) == (old.side, old.zone, old.type)
          if f.level == old.level:
            assert f.severity == pytest.approx(old.severity)
        seen.setdefault(f.name, f)


def test_follow_ups_include_every_kind_of_change():
  kinds = set()
  for p in _patients():
    for prev, cur in zip(p.studies, p.studies[1:]):
      if cur.acquisition_only:
        assert cur.findings == prev.findings
        kinds.add("acquisition only")
      _, answer = vqa.difference(prev.findings, cur.findings, np.random.default_rng(0))
      for word, kind in (("additional", "new"), ("missing", "resolved"), ("level of", "level")):
        kinds.update([kind] if word in answer else [])
  assert kinds == {"acquisition only", "new", "resolved", "level"}


def test_level_changes_move_one_step():
  knobs = KNOBS
  f = Finding("pleural effusion", "left", "base", "moderate", None, 0.5)
  moved = {timeline.change_level(f, np.random.default_rng(s), knobs).level for s in range(20)}
  assert moved == {"small", "moderate to large"}
  assert timeline.change_level(dataclasses.replace(f, level=None), np.random.default_rng(0),
                               knobs) is None
  bigger = timeline.with_level(f, "moderate to large")
  assert bigger.severity > f.severity and bigger.side == "left"


def test_easy_preset_drops_the_subtlest_levels():
  easy = presets.PRESETS["easy"].timeline
  levels = {f.level for p in _patients(knobs=easy) for s in p.studies for f in s.findings}
  assert "minimal" not in levels
  assert {"moderate", "moderate to large"} <= levels


def test_knob_validation_names_the_field():
  with pytest.raises(ValueError, match="p_resolve"):
    presets.TimelineKnobs(p_resolve=1.5)
  with pytest.raises(ValueError, match="min_studies"):
    presets.TimelineKnobs(min_studies=4, max_studies=3)
  with pytest.raises(KeyError, match="expected one of"):
    presets.get_preset("hard")
