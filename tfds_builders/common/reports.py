"""MIMIC-CXR report sections, following the official MIMIC-CXR section parser's rules.

Headers are found with the official regex (a newline, one space, an upper-case header of
`[A-Z ()/,-]+`, a colon and whitespace); header names are lower-cased and normalised
(misspellings, `CONCLUSION` -> impression, `FINDINGS AND IMPRESSION` -> impression, ...).
Empty findings/impression sections are dropped. When neither exists, the official parser's
`last_paragraph` (the text after the first blank line of the last section) is used as the
impression, and the report's full text is kept as always.
"""

from __future__ import annotations

import dataclasses
import re

_SECTION = re.compile(r"\n ([A-Z ()/,-]+):\s")
_UNDERSCORE_LINE = re.compile(r"^\s*_{5,}\s*$", re.MULTILINE)

# Header name (lower case) -> normalised section name; others keep their own name.
_NORMALISED = {
    "impressions": "impression", "conclusion": "impression", "conclusions": "impression",
    "findings and impression": "impression", "findings/impression": "impression",
    "findings/ impression": "impression", "impression and findings": "impression",
    "impresson": "impression", "imprression": "impression", "imoression": "impression",
    "impressoin": "impression", "imprssion": "impression", "impresion": "impression",
    "imperssion": "impression", "mpression": "impression", "impession": "impression",
    "impressiom": "impression", "impressio": "impression",
    "finding": "findings", "findins": "findings", "findindgs": "findings",
    "findgings": "findings", "findngs": "findings", "findnings": "findings",
    "finidngs": "findings", "idings": "findings", "fidings": "findings",
    "chest, two views": "findings",
    "comparisons": "comparison", "comparison exam": "comparison", "comparison film": "comparison",
    "reference exam": "comparison",
    "clinical history": "history", "clinical information": "history",
    "patient history": "history", "pfi": "history",
    "reason for examination": "indication", "reason for exam": "indication",
    "clinical indication": "indication",
    "exam": "examination", "type of examination": "examination",
    "recommendation(s)": "recommendations", "recommendation": "recommendations",
    "wetread": "wet read",
}


@dataclasses.dataclass(frozen=True)
class Report:
  """A parsed report; findings/impression are whitespace-normalised, '' when absent."""
  text: str
  findings: str
  impression: str
  sections: tuple[str, ...]
  last_paragraph_used: bool


def normalise_whitespace(text: str) -> str:
  return " ".join(text.split())


def split_sections(text: str) -> list[tuple[str, str]]:
  """Splits a report into (normalised section name, raw section text), `preamble` first.

  A report without any header is one section named `full report`.
  """
  text = text.replace("\r\n", "\n").replace("\r", "\n")
  if not text.startswith("\n"):
    text = "\n" + text
  matches = list(_SECTION.finditer(text))
  if not matches:
    return [("full report", text)]
  sections = [("preamble", text[:matches[0].start()])]
  for i, m in enumerate(matches):
    end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
    name = " ".join(m.group(1).lower().split())
    sections.append((_NORMALISED.get(name, name), text[m.end():end]))
  return sections


def _clean(section: str) -> str:
  return normalise_whitespace(_UNDERSCORE_LINE.sub(" ", section))


def parse_report(text: str) -> Report:
  """Parses report text into findings and impression (several sections of one name are joined)."""
  sections = [(n, s) for n, s in split_sections(text)
              if not (n in ("findings", "impression") and not _clean(s))]
  names = [n for n, _ in sections]
  findings = " ".join(_clean(s) for n, s in sections if n == "findings")
  impression = " ".join(_clean(s) for n, s in sections if n == "impression")
  last_paragraph_used = False
  if "findings" not in names and "impression" not in names:
    paragraphs = re.split(r"\n[ \t]*\n", sections[-1][1].strip("\n"))
    if len(paragraphs) > 1:
      impression = _clean("\n\n".join(paragraphs[1:]))
      last_paragraph_used = bool(impression)
  return Report(text=text, findings=findings, impression=impression,
                sections=tuple(names), last_paragraph_used=last_paragraph_used)


def read_report(path: str) -> str:
  """Reads a report file as text (raises OSError/UnicodeDecodeError on damage)."""
  with open(path, "r", encoding="utf-8-sig", newline="") as f:
    return f.read()
