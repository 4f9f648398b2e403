"""Report section parsing on MIMIC-CXR-style reports."""

import os

from tfds_builders.common import reports

FULL = ("                                 FINAL REPORT\n"
        " EXAMINATION:  CHEST (PA AND LAT)\n \n"
        " FINDINGS: \n \n"
        " The lungs are clear.  There is a small right pleural effusion which is\n"
        " unchanged.\n \n"
        " IMPRESSION: \n \n"
        " Small right pleural effusion.\n")


def test_findings_and_impression_with_wrapped_lines():
  r = reports.parse_report(FULL)
  assert r.findings == ("The lungs are clear. There is a small right pleural effusion which is "
                        "unchanged.")
  assert r.impression == "Small right pleural effusion."
  assert r.text == FULL and not r.last_paragraph_used


def test_impression_only_and_empty_findings_dropped():
  r = reports.parse_report(" FINAL REPORT\n INDICATION:  x.\n \n FINDINGS: \n \n IMPRESSION:\n"
                           " No acute process.\n")
  assert r.findings == "" and r.impression == "No acute process."
  assert "findings" not in r.sections


def test_misspellings_and_conclusion():
  assert reports.parse_report("\n IMPRESSON:  Edema.\n").impression == "Edema."
  assert reports.parse_report("\n FINDNGS:  Clear\n lungs.\n").findings == "Clear lungs."
  assert reports.parse_report("\n CONCLUSION:\n Effusion.\n").impression == "Effusion."
  r = reports.parse_report("\n FINDINGS AND IMPRESSION:  No change.\n")
  assert r.impression == "No change." and r.findings == ""


def test_neither_section_uses_last_paragraph():
  text = (" FINAL REPORT\n CHEST RADIOGRAPH PERFORMED ON ___\n \n Heart size is normal.\n \n"
          " No pneumothorax.\n")
  r = reports.parse_report(text)
  assert r.findings == ""
  assert r.impression == "Heart size is normal. No pneumothorax."
  assert r.last_paragraph_used and r.text == text


def test_addendum_on_top_and_crlf():
  text = ("                                 FINAL ADDENDUM\r\n"
          " ADDENDUM:  Discussed with Dr. ___.\r\n"
          " ______________________________________________________________________________\r\n"
          "                                 FINAL REPORT\r\n"
          " IMPRESSION:\r\n Mild edema.\r\n")
  r = reports.parse_report(text)
  assert r.sections[:2] == ("preamble", "addendum")
  assert r.impression == "Mild edema."


def test_no_headers_is_full_report():
  assert reports.split_sections("just text") == [("full report", "\njust text")]


FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "raw", "reports")


def _fixture(name):
  return reports.parse_report(reports.read_report(os.path.join(FIXTURES, name)))


def test_fixture_full_report():
  r = _fixture("s50000101.txt")
  assert r.findings.startswith("There is no focal consolidation, pleural effusion or pneumothorax. "
                               "Bilateral nodular opacities")
  assert r.findings.endswith("sixth and seventh ribs are noted.")
  assert r.impression == "No acute cardiopulmonary process."
  assert r.sections == ("preamble", "examination", "indication", "technique", "comparison",
                        "findings", "impression")


def test_fixture_addendum_misspelled_impression_empty_findings():
  r = _fixture("s50000102.txt")
  assert r.findings == ""
  assert r.impression == ("Interval increase in moderate right pleural effusion with adjacent "
                          "compressive atelectasis.")
  assert "addendum" in r.sections and "findings" not in r.sections


def test_fixture_sectionless_last_paragraph():
  r = _fixture("s50000103.txt")
  assert (r.findings, r.last_paragraph_used) == ("", True)
  assert r.impression == ("A right internal jugular central venous catheter terminates in the mid "
                          "SVC. No pneumothorax. Lungs are otherwise clear.")


def test_fixture_wet_read_findings_and_impression_crlf():
  r = _fixture("s50000104.txt")
  assert r.impression == "Low lung volumes with bibasilar atelectasis. No definite consolidation."
  assert r.sections[1] == "wet read"
