"""Ids, paths, dates, patient splits and byte-stable CSV writing."""

import csv
import datetime
import gzip
import io
import re

import numpy as np
import pytest

from locvqa_jax.data.synthetic import layout, writers


def _ids(seed=0, n=50, **kw):
  args = dict(mimic_val=0.1, mimic_test=0.1, imagenome_val=0.1, imagenome_test=0.2,
              gold_fraction=0.02)
  args.update(kw)
  return layout.draw_run_ids(seed, n, 5, **args)


def test_ids_are_unique_and_formatted():
  ids = _ids(n=300)
  assert len(set(ids.subject_ids)) == 300
  studies = [s for per in ids.study_ids for s in per]
  assert len(set(studies)) == len(studies) == 1500
  assert all(re.fullmatch(r"1\d{7}", str(s)) for s in ids.subject_ids)
  assert all(re.fullmatch(r"5\d{7}", str(s)) for s in studies)
  assert _ids(n=300) == ids and _ids(seed=1, n=300) != ids


def test_dicom_id_format():
  rng = np.random.default_rng(0)
  values = {layout.dicom_id(rng) for _ in range(100)}
  assert len(values) == 100
  assert all(re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{8}){4}", v) for v in values)


def test_splits_are_by_patient_with_the_right_sizes():
  ids = _ids(n=100)
  assert ids.mimic_split.count("validate") == 10 and ids.mimic_split.count("test") == 10
  assert ids.imagenome_split.count("valid") == 10 and ids.imagenome_split.count("test") == 20
  assert sum(ids.gold) == 2
  assert all(ids.imagenome_split[i] == "test" for i, g in enumerate(ids.gold) if g)
  small = _ids(n=3)
  assert sorted(small.mimic_split) == ["test", "train", "validate"]
  assert sum(_ids(n=1).gold) == 1


def test_bad_patient_count():
  with pytest.raises(ValueError, match="at least 1"):
    _ids(n=0)


def test_paths():
  assert layout.image_path(10000032, 50414267, "ab") == "files/p10/p10000032/s50414267/ab.jpg"
  assert layout.image_path(10000032, 50414267, "ab", "dcm").endswith("/s50414267/ab.dcm")
  assert layout.report_path(10000032, 50414267) == "files/p10/p10000032/s50414267.txt"


@pytest.mark.parametrize("when, date, time", [
    (datetime.datetime(2180, 5, 6, 21, 30, 14, 531000), 21800506, "213014.531"),
    (datetime.datetime(2180, 5, 6, 8, 5, 56, 875000), 21800506, "80556.875"),
    (datetime.datetime(2101, 12, 31, 0, 0, 7, 500000), 21011231, "7.5"),
    (datetime.datetime(2150, 1, 2, 10, 0, 0), 21500102, "100000.0"),
])
def test_study_date_and_time(when, date, time):
  assert layout.study_date(when) == date
  assert layout.study_time(when) == time
  padded = "%010.3f" % float(time)
  assert datetime.datetime.strptime(f"{date}{padded}", "%Y%m%d%H%M%S.%f") == when


def test_study_order_ranks_with_ties_sharing_the_lower_rank():
  assert layout.study_order([21500105, 21500101, 21500103]) == [3.0, 1.0, 2.0]
  assert layout.study_order([21500101, 21500101, 21500103]) == [1.0, 1.0, 3.0]


def test_csv_writing_is_pandas_like_and_byte_stable(tmp_path):
  rows = [[1, "a, b", "the x. "], [2, 'say "hi"', ""]]
  path = str(tmp_path / "t.csv.gz")
  writers.write_csv(path, ["id", "text", "answer"], rows)
  first = open(path, "rb").read()
  writers.write_csv(path, ["id", "text", "answer"], rows)
  assert open(path, "rb").read() == first
  text = gzip.decompress(first).decode()
  assert text == 'id,text,answer\n1,"a, b",the x. \n2,"say ""hi""",\n'
  assert list(csv.reader(io.StringIO(text)))[1] == ["1", "a, b", "the x. "]
  writers.write_csv(str(tmp_path / "i.csv"), ["a"], [["x"], ["y"]], index=True)
  assert (tmp_path / "i.csv").read_text() == ",a\n0,x\n1,y\n"


def test_patient_generators_depend_only_on_seed_and_index():
  a = writers.patient_rngs(3, 7)["timeline"].random(3)
  b = writers.patient_rngs(3, 7)["timeline"].random(3)
  c = writers.patient_rngs(3, 8)["timeline"].random(3)
  assert np.array_equal(a, b) and not np.array_equal(a, c)
  rngs = writers.patient_rngs(3, 7)
  assert rngs["timeline"].random() != rngs["render"].random()
