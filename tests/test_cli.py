"""The command line (`charserve`, app/cli.py) on the bundled models: pipes, files, JSON, poems, serve's flags."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import cli
from app.api.http_protocol import SERVER_DEFAULTS
from tests.conftest import ROOT


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str], stdin: str = "") -> str:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    assert cli.main(argv) == 0
    return capsys.readouterr().out


def test_correct_a_pipe_as_a_user_would() -> None:
    """`echo "Ths sentense has erors" | python -m app.cli correct`, in a process of its own."""
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "correct"],
        input="Ths sentense has erors\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
        check=True,
    )
    assert done.stdout == "This sentence has errors\n"


def test_correct_a_file_line_by_line_as_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = tmp_path / "in.txt"
    text.write_text("I recieved the pakage\n\nnothing wrong here\n", encoding="utf-8")
    lines = run(monkeypatch, capsys, ["correct", str(text), "--json", "--progress"]).splitlines()
    assert len(lines) == 3 and lines[1] == ""  # a blank line comes back blank, in its place
    first, third = json.loads(lines[0]), json.loads(lines[2])
    assert first["text"] == "I received the package"
    assert [(c["start"], c["end"], c["suggestion"]) for c in first["corrections"]] == [
        (2, 10, "received"),
        (15, 21, "package"),
    ]
    assert third == {"text": "nothing wrong here", "corrections": []}


def test_correct_many_lines_in_batches(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [f"Ths is line {i}" for i in range(cli.BATCH_LINES + 3)]  # more than one model call
    out = run(monkeypatch, capsys, ["correct"], "\n".join(lines) + "\n").splitlines()
    assert out == [f"This is line {i}" for i in range(cli.BATCH_LINES + 3)]


def test_classify(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = run(monkeypatch, capsys, ["classify"], "Antonio_Veciana\nKneuterdijk Palace\n")
    assert out == "Person\tAntonio_Veciana\nPlace\tKneuterdijk Palace\n"
    found = json.loads(run(monkeypatch, capsys, ["classify", "-", "--json"], "Conus textile\n"))
    assert found["text"] == "Conus textile" and found["label"] == "Species"
    assert set(found["scores"]) == {"Person", "Place", "Organisation", "Work", "Species"}
    assert sum(found["scores"].values()) == pytest.approx(1, abs=0.02)


def test_poem(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    lines = run(monkeypatch, capsys, ["poem", "--form", "qiyan_jueju", "--acrostic", "春夏秋冬"]).splitlines()
    assert [line[0] for line in lines] == list("春夏秋冬") and all(len(line) == 7 for line in lines)
    argv = ["poem", "--form", "wuyan_lushi", "--temperature", "0.8", "--seed", "7", "--json"]
    sampled = json.loads(run(monkeypatch, capsys, argv))
    assert sampled["seed"] == 7 and sampled["form"] == "wuyan_lushi" and len(sampled["lines"]) == 8
    assert json.loads(run(monkeypatch, capsys, argv)) == sampled  # a seed fixes the poem


def test_poem_request_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["poem", "--acrostic", "ABC"]) == 2
    assert "not in the poet's vocabulary" in capsys.readouterr().err


def test_serve_starts_uvicorn_as_make_serve_does(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    called: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: called.update(app=app, **options))
    for name in SERVER_DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["serve", "--port", "9000"]) == 0
    bounds = {"timeout_graceful_shutdown": 30, "limit_concurrency": 1024, "http": SERVER_DEFAULTS["UVICORN_HTTP"]}
    assert called == {"app": "app.main:app", "host": "127.0.0.1", "port": 9000, "access_log": False, **bounds}


def test_configuration_doc_lists_every_setting(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """docs/configuration.md is `charserve settings`'s output: regenerate it when app/settings.py changes."""
    table = run(monkeypatch, capsys, ["settings"])
    assert "| `CHARSERVE_POET_PRECISION` | `auto` |" in table
    assert (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8") == table, (
        "docs/configuration.md is stale: python -m app.cli settings > docs/configuration.md"
    )


def test_progress_bar_goes_to_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(cli, "PROGRESS_DELAY_S", 0)  # a small file: show the bar at once
    names = tmp_path / "names.txt"
    names.write_text("Antonio_Veciana\nKneuterdijk Palace\n", encoding="utf-8")
    assert cli.main(["classify", str(names), "--progress"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "Person\tAntonio_Veciana\nPlace\tKneuterdijk Palace\n"
    assert "2 lines" in captured.err
    assert cli.main(["classify", str(names), "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


def test_a_missing_file_or_artifact_is_one_line_on_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert cli.main(["classify", str(tmp_path / "absent.txt")]) == 1
    assert "absent.txt" in capsys.readouterr().err
    monkeypatch.setenv("CHARSERVE_MODELS_DIR", str(tmp_path))
    assert cli.main(["poem"]) == 1
    assert "manifest.json" in capsys.readouterr().err
