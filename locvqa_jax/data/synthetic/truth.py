"""Ground truth shared by the synthetic generator's timeline (what is there) and renderer (how it looks).

The timeline decides, per patient and study, which findings and devices are present; the renderer
draws them and reports where everything ended up in pixels. Reports, scene graphs and questions are
then written from these records, so the text can never disagree with the image.

Coordinates are always original-image pixels, ``(x1, y1, x2, y2)`` with x to the image's right
and y downward. Radiological convention: the patient's left is on the image's right.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Optional

import numpy as np

Side = Literal["left", "right", "bilateral"]
Zone = Literal["apical", "upper", "mid", "lower", "base"]
View = Literal["PA", "AP", "LATERAL"]
Box = tuple[float, float, float, float]

# Finding names (official Medical-Diff-VQA names) the renderer knows how to draw.
DRAWABLE_FINDINGS = (
    "pleural effusion",
    "atelectasis",
    "lung opacity",
    "consolidation",
    "pneumonia",
    "edema",
    "vascular congestion",
    "cardiomegaly",
    "enlargement of the cardiac silhouette",
    "pneumothorax",
    "granuloma",
    "calcification",
    "fracture",
    "blunting of the costophrenic angle",
)

# Support devices: drawn and reported, never named in a question or answer.
DRAWABLE_DEVICES = ("endotracheal tube", "enteric tube", "central line", "pacemaker")


@dataclasses.dataclass(frozen=True)
class Finding:
  """One finding in one study.

  Attributes:
    name: official Medical-Diff-VQA finding name, one of ``DRAWABLE_FINDINGS``.
    side: which lung or hemithorax (patient's side); None for midline or cardiac findings.
    zone: vertical position within the lung; None where it does not apply.
    level: a Diff-VQA level word (e.g. ``small``, ``moderate to large``) or None.
    type: a Diff-VQA type word (e.g. ``patchy``, ``layering``) or None.
    severity: 0..1, what the renderer uses for size and density; consistent with ``level``.
  """

  name: str
  side: Optional[Side] = None
  zone: Optional[Zone] = None
  level: Optional[str] = None
  type: Optional[str] = None
  severity: float = 0.5


@dataclasses.dataclass(frozen=True)
class Device:
  """A support device present in one study (``name`` in ``DRAWABLE_DEVICES``)."""

  name: str
  side: Optional[Literal["left", "right"]] = None


@dataclasses.dataclass
class Rendered:
  """What the renderer returns for one image.

  Attributes:
    image: [rows, cols] uint8, histogram-equalised like MIMIC-CXR-JPG (air dark, bone bright).
    region_boxes: Chest ImaGenome ``bbox_name`` -> box in original pixels, for every one of the
      36 object regions (frontal views only; empty for lateral views). Boxes may extend past the
      image edge, as real ones do.
    finding_boxes: one list of boxes per input finding (same order), where it was drawn; a
      bilateral finding has one box per side; a finding the view cannot show has none.
  """

  image: np.ndarray
  region_boxes: dict[str, Box]
  finding_boxes: list[list[Box]]
