"""The README's examples come back as written: each `curl` to /correct, /classify or /poem that an answer follows
is sent to the app on the bundled models, and each `echo ... | charserve correct` run, by bench/readme_examples.py
(which anyone can run on their own CPU: docs/readme_examples.md); its relative links lead somewhere."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.readme_examples import Answerer, Example, examples, same_answer
from tests.conftest import ROOT

EXAMPLES = examples(ROOT / "README.md")


@pytest.fixture(scope="module")
def answerer() -> Iterator[Answerer]:
    answering = Answerer({e.path for e in EXAMPLES})
    yield answering
    answering.close()


def test_the_readme_has_examples_to_check() -> None:
    assert {e.path for e in EXAMPLES} == {"/correct", "/classify", "/poem", "charserve correct"}
    assert any(e.body.get("stream") for e in EXAMPLES)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
def test_readme_example(answerer: Answerer, example: Example) -> None:
    got = answerer.answer(example)
    # Confidences and scores may move in their last digits where int8 kernels differ by CPU; nothing else may.
    assert same_answer(example.path, got, example.shown), f"README shows {example.shown}, the app answers {got}"


def heading_anchors(page: Path) -> set[str]:
    """GitHub's anchors for a Markdown page's headings (outside code blocks)."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("page", [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_relative_links_lead_somewhere(page: Path) -> None:
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked)):
            broken.append(target)
    assert not broken, f"{page.name} links to what is not there: {broken}"
