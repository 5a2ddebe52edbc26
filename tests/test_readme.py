"""The README's API examples come back as written: each `curl` to /correct or /classify that a JSON answer
follows is sent to the app on the bundled models, and the answer compared with the README's."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.conftest import ROOT

EXAMPLE = re.compile(r"```bash\n(curl [^\n]*localhost:8000(/correct|/classify)[^\n]*)\n```\n```json\n(.*?)```", re.S)


def examples() -> list[tuple[str, dict, dict]]:
    found = []
    for command, path, answer in EXAMPLE.findall((ROOT / "README.md").read_text(encoding="utf-8")):
        body = re.search(r"-d '(.*)'", command)
        assert body, command
        found.append((path, json.loads(body.group(1)), json.loads(answer)))
    return found


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(Settings(models=["speller", "classifier"]))) as c:
        yield c


def test_the_readme_has_examples_to_check() -> None:
    assert {path for path, _, _ in examples()} == {"/correct", "/classify"}


@pytest.mark.parametrize(("path", "body", "answer"), examples(), ids=lambda v: v if isinstance(v, str) else "")
def test_readme_example(client: TestClient, path: str, body: dict, answer: dict) -> None:
    got = client.post(path, json=body)
    assert got.status_code == 200, got.text
    if path == "/correct":
        assert got.json() == answer
        return
    # A label is the same on every machine; scores may move in their last digit (int8 kernels differ by CPU).
    for ours, theirs in zip(got.json()["results"], answer["results"], strict=True):
        assert ours["label"] == theirs["label"]
        assert ours["scores"] == pytest.approx(theirs["scores"], abs=0.01)
