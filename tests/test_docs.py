"""The documents point at things that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_every_test_named_in_the_reliability_page_exists() -> None:
    text = (ROOT / "docs/reliability.md").read_text()
    current = ""
    named = 0
    for match in re.finditer(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`", text):
        path, name = match.group(1), match.group(2)
        current = path or current
        source = (ROOT / current).read_text()
        if name:
            assert re.search(rf"^def {name}\(", source, re.M), f"{current}::{name}"
            named += 1
    assert named > 40


def test_readme_links_resolve() -> None:
    text = (ROOT / "README.md").read_text()
    for link in re.findall(r"\]\(((?:docs|examples)/[^)#]+)\)", text):
        assert (ROOT / link).exists(), link
