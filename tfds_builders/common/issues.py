"""Build issues: loud errors for undocumented damage, counters for documented quirks.

Documented quirks of the real releases are handled and counted (`BuildSummary.quirk`). Anything
else that makes an example unusable raises `BadInputError` naming the file, line or key, unless
the build runs with `skip_bad_examples`, in which case the example is skipped and counted.
"""

from __future__ import annotations

import collections
import json
from typing import Any

# How many skipped-example messages the summary keeps per kind.
_MAX_EXAMPLES = 5

SKIP_HINT = "(pass --skip_bad_examples to skip such examples and count them instead)"


class BadInputError(ValueError):
  """A raw file is damaged in a way the builders do not know how to handle."""


class BuildSummary:
  """Counts quirks and skipped examples of one build; `bad()` raises unless skipping."""

  def __init__(self, skip_bad_examples: bool = False):
    self.skip_bad_examples = skip_bad_examples
    self.quirks: collections.Counter[str] = collections.Counter()
    self.skipped: collections.Counter[str] = collections.Counter()
    self.skipped_examples: dict[str, list[str]] = collections.defaultdict(list)
    self.counts: dict[str, Any] = {}

  def quirk(self, name: str, n: int = 1) -> None:
    """Records n occurrences of a documented, handled quirk."""
    if n:
      self.quirks[name] += n

  def bad(self, kind: str, message: str) -> None:
    """Reports undocumented damage: raises, or counts it when skipping bad examples."""
    if not self.skip_bad_examples:
      raise BadInputError(f"{message} {SKIP_HINT}")
    self.skipped[kind] += 1
    if len(self.skipped_examples[kind]) < _MAX_EXAMPLES:
      self.skipped_examples[kind].append(message)

  def to_dict(self) -> dict[str, Any]:
    return {
        "counts": self.counts,
        "quirks_handled": dict(sorted(self.quirks.items())),
        "skipped_bad_examples": dict(sorted(self.skipped.items())),
        "skipped_messages": {k: v for k, v in sorted(self.skipped_examples.items())},
    }

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=False)

  def format(self, title: str) -> str:
    """A human-readable summary table."""
    lines = [f"== {title} =="]
    for key, value in self.counts.items():
      lines.append(f"  {key}: {value}")
    lines.append("  quirks handled:" + ("" if self.quirks else " none"))
    for key, value in sorted(self.quirks.items()):
      lines.append(f"    {key}: {value}")
    lines.append("  bad examples skipped:" + ("" if self.skipped else " none"))
    for key, value in sorted(self.skipped.items()):
      lines.append(f"    {key}: {value}")
      for message in self.skipped_examples[key]:
        lines.append(f"      e.g. {message}")
    return "\n".join(lines)
