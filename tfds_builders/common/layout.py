"""Where each release sits under `manual_dir`.

Accepted per dataset (first match wins, newest version folder first):
`<manual>/<name>/`, `<manual>/<name>/<version>/`, `<manual>/<name>-<version>/`,
`<manual>/<name>/<version>/<alias>-<version>/` (an unzipped release inside a version folder) and
the `wget -r` layout `<manual>/physionet.org/files/<name>/<version>/`, for every accepted name of
the dataset.
"""

from __future__ import annotations

import os
import re
from typing import Callable, Optional, Sequence

from tfds_builders.common.issues import BadInputError

_VERSION = re.compile(r"^\d+(\.\d+)*$")

MIMIC_CXR_JPG = ("mimic-cxr-jpg",)
MIMIC_CXR_REPORTS = ("mimic-cxr-reports", "mimic-cxr")
CHEST_IMAGENOME = ("chest-imagenome", "chest-imagenome-dataset")
DIFF_VQA = ("medical-diff-vqa", "mimic-diff-vqa")


def _version_key(name: str) -> tuple[int, ...]:
  return tuple(int(p) for p in name.split("."))


def _versions(directory: str) -> list[str]:
  if not os.path.isdir(directory):
    return []
  names = [n for n in os.listdir(directory)
           if _VERSION.match(n) and os.path.isdir(os.path.join(directory, n))]
  return sorted(names, key=_version_key, reverse=True)


def candidates(manual_dir: str, names: Sequence[str]) -> list[str]:
  """All folders that may hold the release, in the order they are tried."""
  out = []
  for name in names:
    for base in (os.path.join(manual_dir, name),
                 os.path.join(manual_dir, "physionet.org", "files", name)):
      out.append(base)
      for version in _versions(base):
        out.append(os.path.join(base, version))
        out.extend(os.path.join(base, version, f"{alias}-{version}") for alias in names)
    if os.path.isdir(manual_dir):
      prefixed = [n for n in os.listdir(manual_dir)
                  if n.startswith(name + "-") and _VERSION.match(n[len(name) + 1:])]
      for n in sorted(prefixed, key=lambda n: _version_key(n[len(name) + 1:]), reverse=True):
        out.append(os.path.join(manual_dir, n))
  return out


def find_release(manual_dir: str, names: Sequence[str], is_release: Callable[[str], bool],
                 what: str, required: bool = True) -> Optional[str]:
  """Returns the first candidate folder for which `is_release` holds."""
  if not os.path.isdir(manual_dir):
    raise BadInputError(f"manual_dir {manual_dir} does not exist")
  tried = candidates(manual_dir, names)
  for path in tried:
    if os.path.isdir(path) and is_release(path):
      return path
  if required:
    raise BadInputError(f"cannot find {what} under manual_dir {manual_dir}; tried: "
                        + ", ".join(os.path.relpath(p, manual_dir) for p in tried))
  return None


def _has_table(directory: str, stem: str) -> bool:
  return any(os.path.isfile(os.path.join(directory, stem + s)) for s in (".csv", ".csv.gz"))


def mimic_cxr_jpg_root(manual_dir: str) -> str:
  """The MIMIC-CXR-JPG folder holding `files/` and the metadata table."""
  return find_release(
      manual_dir, MIMIC_CXR_JPG,
      lambda p: _has_table(p, "mimic-cxr-2.0.0-metadata") and os.path.isdir(
          os.path.join(p, "files")),
      "MIMIC-CXR-JPG (files/ and mimic-cxr-2.0.0-metadata.csv.gz)")


def _is_reports_files(path: str) -> bool:
  return any(re.match(r"^p1\d$", n) for n in os.listdir(path))


def reports_root(manual_dir: str, required: bool = True) -> Optional[str]:
  """The folder holding the report folders `p10`..`p19` (the unzipped reports' `files/`)."""
  for path in candidates(manual_dir, MIMIC_CXR_REPORTS):
    for sub in (os.path.join(path, "files"), path):
      if os.path.isdir(sub) and _is_reports_files(sub):
        return sub
  if required:
    raise BadInputError(
        f"cannot find the MIMIC-CXR reports under manual_dir {manual_dir}: expected "
        "mimic-cxr-reports/files/p1X/... (unzipped mimic-cxr-reports.zip)")
  return None


def chest_imagenome_root(manual_dir: str) -> str:
  """The Chest ImaGenome folder holding `silver_dataset/`."""
  return find_release(
      manual_dir, CHEST_IMAGENOME,
      lambda p: os.path.isdir(os.path.join(p, "silver_dataset")),
      "Chest ImaGenome (silver_dataset/)")


def diff_vqa_root(manual_dir: str) -> str:
  """The Medical-Diff-VQA folder holding `mimic_pair_questions.csv`."""
  return find_release(
      manual_dir, DIFF_VQA, lambda p: _has_table(p, "mimic_pair_questions"),
      "Medical-Diff-VQA (mimic_pair_questions.csv)")


def image_path(jpg_root: str, subject_id: str, study_id: str, dicom_id: str) -> str:
  """`files/p{subject[:2]}/p{subject}/s{study}/{dicom}.jpg` under the MIMIC-CXR-JPG root."""
  return os.path.join(jpg_root, "files", f"p{subject_id[:2]}", f"p{subject_id}",
                      f"s{study_id}", f"{dicom_id}.jpg")


def report_path(reports_dir: str, subject_id: str, study_id: str) -> str:
  """Reports sit in the patient folder, next to the study folder."""
  return os.path.join(reports_dir, f"p{subject_id[:2]}", f"p{subject_id}", f"s{study_id}.txt")
