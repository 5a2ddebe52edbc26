"""docs/README.md, the index, lists every page of docs/ (tests/test_readme.py checks that links lead somewhere)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)\s]*)?\)")


def test_the_docs_index_lists_every_page() -> None:
    index = ROOT / "docs" / "README.md"
    listed = {(index.parent / t).resolve() for t in LINK.findall(index.read_text(encoding="utf-8"))}
    # Templates are the sources generated pages are written from, not pages to read.
    pages = {p.resolve() for p in (ROOT / "docs").glob("*.md") if p != index and not p.name.endswith(".template.md")}
    assert not pages - listed, f"docs/README.md does not list: {sorted(p.name for p in pages - listed)}"
