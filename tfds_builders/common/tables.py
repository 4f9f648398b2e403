"""Reading the releases' CSV tables: `.csv` or `.csv.gz`, columns found by header name.

Tolerates what real copies of the files contain: a UTF-8 byte-order mark, CRLF line ends, quoted
fields with commas or newlines, an unnamed index column. A row with the wrong number of fields is
damage and goes through `BuildSummary.bad` with the file and line.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import zlib
from typing import Iterator, Optional, Sequence

from tfds_builders.common.issues import BadInputError, BuildSummary

SUFFIXES = (".csv.gz", ".csv")


def find_table(directory: str, stem: str, required: bool = True) -> Optional[str]:
  """Returns `directory/stem.csv.gz` or `directory/stem.csv`, whichever exists."""
  for suffix in SUFFIXES:
    path = os.path.join(directory, stem + suffix)
    if os.path.isfile(path):
      return path
  if required:
    raise BadInputError(f"missing table {stem}.csv.gz (or {stem}.csv) in {directory}")
  return None


def _open_text(path: str) -> io.TextIOBase:
  if path.endswith(".gz"):
    return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
  return open(path, "r", encoding="utf-8-sig", newline="")


class Row(dict):
  """A table row: column name -> str, with the file and 1-based line it started on."""

  path: str
  line: int
  index: int  # 0-based data row (pandas index), counting malformed rows too

  def where(self) -> str:
    return f"{self.path} line {self.line}"


def read_table(path: str, required: Sequence[str], summary: BuildSummary,
               optional: Sequence[str] = ()) -> Iterator[Row]:
  """Yields the rows of a CSV table as `Row`s holding the `required` and `optional` columns.

  Missing required columns, an unreadable file and undecodable bytes raise `BadInputError`;
  rows with the wrong field count go to `summary.bad` (raise, or skip and count).
  """
  try:
    with _open_text(path) as f:
      reader = csv.reader(f)
      try:
        header = next(reader)
      except StopIteration:
        raise BadInputError(f"{path}: empty file, expected a header line") from None
      header = [h.strip() for h in header]
      missing = [c for c in required if c not in header]
      if missing:
        raise BadInputError(f"{path} line 1: missing column(s) {missing}; header is {header}")
      columns = {c: header.index(c) for c in list(required) + [c for c in optional if c in header]}
      line = reader.line_num + 1
      index = -1
      for fields in reader:
        start, line = line, reader.line_num + 1
        if not fields:
          continue
        index += 1
        if len(fields) != len(header):
          summary.bad("malformed_csv_row",
                      f"{path} line {start}: expected {len(header)} fields, got {len(fields)}")
          continue
        row = Row((c, fields[i]) for c, i in columns.items())
        row.path, row.line, row.index = path, start, index
        yield row
  except (OSError, EOFError, UnicodeDecodeError, csv.Error, zlib.error) as e:
    raise BadInputError(f"{path}: cannot read table: {e}") from e
