"""Ids, paths, dates and patient splits in the formats of the real releases (DATA_FORMATS.md).

* subject ids: 8 digits starting with 1; study ids: 8 digits starting with 5, random (no
  chronology); dicom ids: 5 groups of 8 lower-case hex digits joined by ``-``.
* MIMIC-CXR-JPG images ``files/pXX/pNNNNNNNN/sNNNNNNNN/<dicom_id>.jpg``; reports
  ``files/pXX/pNNNNNNNN/sNNNNNNNN.txt`` (in the patient folder); Chest ImaGenome split paths end in
  ``.dcm``.
* ``StudyDate`` an integer ``YYYYMMDD``; ``StudyTime`` ``HHMMSS.fff`` written as a float, so the
  leading zero is lost (``80556.875``).

Ids are drawn once per run in the parent process (without replacement, so they are unique) and
handed to the per-patient workers; everything else a patient needs comes from its own generator.
"""

from __future__ import annotations

import dataclasses
import datetime

import numpy as np

SUBJECT_BASE = 10_000_000
STUDY_BASE = 50_000_000
ID_SPAN = 10_000_000
MIMIC_SPLITS = ("train", "validate", "test")
IMAGENOME_SPLITS = ("train", "valid", "test")


@dataclasses.dataclass(frozen=True)
class RunIds:
  """Per-run assignments, drawn from the run seed only (independent of the worker count).

  Attributes:
    subject_ids: [N] subject id of each patient.
    study_ids: [N, max_studies] unique study ids reserved for each patient.
    mimic_split: [N] MIMIC-CXR-JPG split (`train`/`validate`/`test`) of each patient.
    imagenome_split: [N] Chest ImaGenome split (`train`/`valid`/`test`) of each patient.
    gold: [N] whether the patient is a "gold" patient listed in images_to_avoid.csv.
  """

  subject_ids: tuple[int, ...]
  study_ids: tuple[tuple[int, ...], ...]
  mimic_split: tuple[str, ...]
  imagenome_split: tuple[str, ...]
  gold: tuple[bool, ...]


def split_patients(rng: np.random.Generator, n: int, val_fraction: float, test_fraction: float,
                   names: tuple[str, str, str]) -> list[str]:
  """Assigns each of n patients a split; val/test get at least one patient once n >= 3."""
  n_val = max(1 if n >= 3 and val_fraction > 0 else 0, round(val_fraction * n))
  n_test = max(1 if n >= 3 and test_fraction > 0 else 0, round(test_fraction * n))
  order = rng.permutation(n)
  out = [names[0]] * n
  for rank, i in enumerate(order):
    if rank < n_val:
      out[i] = names[1]
    elif rank < n_val + n_test:
      out[i] = names[2]
  return out


def draw_run_ids(seed: int, n_patients: int, max_studies: int, *, mimic_val: float,
                 mimic_test: float, imagenome_val: float, imagenome_test: float,
                 gold_fraction: float) -> RunIds:
  """Draws unique ids and patient splits for a run of ``n_patients``."""
  if n_patients < 1:
    raise ValueError(f"--patients must be at least 1, got {n_patients}")
  if n_patients > ID_SPAN // 10 or n_patients * max_studies > ID_SPAN // 2:
    raise ValueError(f"--patients {n_patients} is too many for 8-digit ids")
  rng = np.random.default_rng(np.random.SeedSequence([seed, 0x1D5]))
  subjects = SUBJECT_BASE + rng.choice(ID_SPAN, size=n_patients, replace=False)
  studies = STUDY_BASE + rng.choice(ID_SPAN, size=n_patients * max_studies, replace=False)
  mimic = split_patients(rng, n_patients, mimic_val, mimic_test, MIMIC_SPLITS)
  imagenome = split_patients(rng, n_patients, imagenome_val, imagenome_test, IMAGENOME_SPLITS)
  test_patients = [i for i, s in enumerate(imagenome) if s == "test"] or list(range(n_patients))
  n_gold = min(len(test_patients), max(1, round(gold_fraction * n_patients)))
  gold_set = {test_patients[i] for i in rng.permutation(len(test_patients))[:n_gold]}
  return RunIds(
      subject_ids=tuple(int(s) for s in subjects),
      study_ids=tuple(tuple(int(s) for s in studies[i * max_studies:(i + 1) * max_studies])
                      for i in range(n_patients)),
      mimic_split=tuple(mimic), imagenome_split=tuple(imagenome),
      gold=tuple(i in gold_set for i in range(n_patients)))


def dicom_id(rng: np.random.Generator) -> str:
  """A MIMIC-style dicom id: 5 groups of 8 hex digits joined by '-' (44 characters)."""
  return "-".join(f"{int(v):08x}" for v in rng.integers(0, 2**32, size=5, dtype=np.uint64))


def patient_dir(subject_id: int) -> str:
  """``files/p10/p10000032`` for subject 10000032."""
  s = str(subject_id)
  return f"files/p{s[:2]}/p{s}"


def image_path(subject_id: int, study_id: int, dicom: str, ext: str = "jpg") -> str:
  """``files/pXX/pNNNNNNNN/sNNNNNNNN/<dicom>.<ext>`` (relative to the dataset root)."""
  return f"{patient_dir(subject_id)}/s{study_id}/{dicom}.{ext}"


def report_path(subject_id: int, study_id: int) -> str:
  """``files/pXX/pNNNNNNNN/sNNNNNNNN.txt``: the report sits in the patient folder."""
  return f"{patient_dir(subject_id)}/s{study_id}.txt"


def study_date(when: datetime.datetime) -> int:
  """``StudyDate``: integer YYYYMMDD."""
  return when.year * 10000 + when.month * 100 + when.day


def study_time(when: datetime.datetime) -> str:
  """``StudyTime`` as pandas writes the float HHMMSS.fff: no leading zero, trailing zeros cut."""
  value = when.hour * 10000 + when.minute * 100 + when.second + when.microsecond // 1000 / 1000
  return repr(round(value, 3))


def study_order(dates: list[int]) -> list[float]:
  """Rank of each date within a subject, ties sharing the lower rank (1.0 = earliest)."""
  return [float(1 + sum(d < x for d in dates)) for x in dates]

