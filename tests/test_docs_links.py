"""The README and docs/ link only to files that exist, and docs/README.md, the index, lists every page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target): a relative target, without its #anchor; web addresses and in-page anchors are not files.
LINK = re.compile(r"\]\(([^)\s]+)\)")


def relative_targets(page: Path) -> list[str]:
    targets = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        path = target.split("#")[0]
        if path and not re.match(r"^[a-z]+:", path):
            targets.append(path)
    return targets


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file(page: Path) -> None:
    missing = [t for t in relative_targets(page) if not (page.parent / t).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to files that do not exist: {missing}"


def test_the_docs_index_lists_every_page() -> None:
    index = ROOT / "docs" / "README.md"
    listed = {(index.parent / t).resolve() for t in relative_targets(index)}
    # Templates are the sources generated pages are written from, not pages to read.
    pages = {p.resolve() for p in PAGES[1:] if p != index and not p.name.endswith(".template.md")}
    assert not pages - listed, f"docs/README.md does not list: {sorted(p.name for p in pages - listed)}"
