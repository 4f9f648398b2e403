"""CSV reading: by header name, BOM, CRLF, quoted commas/newlines, gz, loud errors."""

import gzip

import pytest

from tfds_builders.common import tables
from tfds_builders.common.issues import BadInputError, BuildSummary


def _write(path, text, gz=False):
  data = text.encode("utf-8")
  path.write_bytes(gzip.compress(data) if gz else data)
  return str(path)


def test_reads_by_header_name_with_quirks(tmp_path):
  path = _write(tmp_path / "t.csv.gz", "\ufeffb,a,c\r\n2,1,\"x, y\"\r\n4,3,\"two\nlines \"\r\n",
                gz=True)
  rows = list(tables.read_table(path, ("a", "c"), BuildSummary()))
  assert [dict(r) for r in rows] == [{"a": "1", "c": "x, y"}, {"a": "3", "c": "two\nlines "}]
  assert [(r.line, r.index) for r in rows] == [(2, 0), (3, 1)]


def test_missing_column_is_named(tmp_path):
  path = _write(tmp_path / "t.csv", "a,b\n1,2\n")
  with pytest.raises(BadInputError, match=r"t\.csv line 1: missing column\(s\) \['split'\]"):
    list(tables.read_table(path, ("a", "split"), BuildSummary()))


def test_malformed_row_raises_or_is_counted(tmp_path):
  path = _write(tmp_path / "t.csv", "a,b\n1,2\n3\n5,6\n")
  with pytest.raises(BadInputError, match=r"t\.csv line 3: expected 2 fields, got 1"):
    list(tables.read_table(path, ("a",), BuildSummary()))
  summary = BuildSummary(skip_bad_examples=True)
  rows = list(tables.read_table(path, ("a",), summary))
  assert [(r["a"], r.index) for r in rows] == [("1", 0), ("5", 2)]
  assert summary.skipped == {"malformed_csv_row": 1}


def test_damaged_gzip_is_named(tmp_path):
  path = _write(tmp_path / "t.csv.gz", "not gzip at all")
  with pytest.raises(BadInputError, match=r"t\.csv\.gz: cannot read table"):
    list(tables.read_table(path, ("a",), BuildSummary()))


def test_find_table_prefers_gz_and_names_missing(tmp_path):
  _write(tmp_path / "m.csv", "a\n")
  assert tables.find_table(str(tmp_path), "m").endswith("m.csv")
  _write(tmp_path / "m.csv.gz", "a\n", gz=True)
  assert tables.find_table(str(tmp_path), "m").endswith("m.csv.gz")
  with pytest.raises(BadInputError, match=r"missing table x\.csv\.gz \(or x\.csv\)"):
    tables.find_table(str(tmp_path), "x")
