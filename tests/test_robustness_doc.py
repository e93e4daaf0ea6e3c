"""docs/robustness.md names a test for every bad-input class: each named test must exist."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_every_test_named_in_robustness_md_exists():
    doc = (REPO / "docs" / "robustness.md").read_text()
    defined = {
        m for path in (REPO / "tests").glob("test_*.py") for m in re.findall(r"^def (test_\w+)", path.read_text(), re.M)
    }
    named = set(re.findall(r"(?<![/\w])(test_\w+)(?!\w|\.py)", doc))  # test names, not file names
    prefixes = {n[:-1] for n in named if n.endswith("_")}  # `test_sanitizer_*`
    missing = sorted(n for n in named if not n.endswith("_") and n not in defined)
    assert not missing, missing
    for path in re.findall(r"`(tests/test_\w+\.py)", doc):
        assert (REPO / path).is_file(), path
    assert all(any(d.startswith(p) for d in defined) for p in prefixes)
