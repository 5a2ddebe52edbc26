"""The README's examples answered by this checkout on this machine's CPU, and compared with the answers it shows.

    PYTHONPATH=. python -m bench.readme_examples                  # exit 1 when an example answers otherwise
    PYTHONPATH=. python -m bench.readme_examples --save here.json # also keep every answer, to diff two machines

Each `curl` to /correct, /classify or /poem that an answer follows (JSON, or the events of a stream) is sent to
the app built on the bundled models, in process (no server, no network), and so is each `echo "..." | charserve
correct` whose comment shows the line it prints. An answer is "identical", "same" (the same words, places,
labels and poem; confidences and scores apart by at most what CPUs' int8 kernels move them, CONFIDENCE_TOLERANCE
and SCORE_TOLERANCE) or "different". CHARSERVE_* variables apply, e.g. CHARSERVE_POET_PRECISION=float32.

To answer as another x86-64 processor would, run it under QEMU's user-mode emulation, whose CPU models offer
other instruction sets (ONNX Runtime picks its kernels by what cpuid reports); docs/readme_examples.md has the
commands and what they gave.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import sys
import unittest.mock
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIDENCE_TOLERANCE = 0.03
SCORE_TOLERANCE = 0.01
# Alternatives less likely than this may swap places between CPUs; they are compared by confidence only.
LIKELY = 0.05
DEADLINE_S = 3600.0

# A ```bash block holding one curl (continued lines joined) and the block that follows it: the answer.
API_EXAMPLE = re.compile(
    r"```bash\n(curl [^`]*?localhost:8000(/correct|/classify|/poem)[^`]*?)\n```\n```(?:json)?\n(.*?)```", re.S
)
CLI_EXAMPLE = re.compile(r'^echo "([^"]+)" \| charserve correct\s+# (.+)$', re.M)


@dataclass(frozen=True)
class Example:
    path: str  # the endpoint, or "charserve correct"
    body: dict[str, Any]
    shown: Any  # the README's answer: JSON, a poem stream's final event, or the CLI's line

    @property
    def name(self) -> str:
        return f"{self.path} {json.dumps(self.body, ensure_ascii=False)}"


def stream_events(text: str) -> list[tuple[str, Any]]:
    """(event, data) pairs of a text/event-stream; an elided `...` line is skipped."""
    return [(event, json.loads(data)) for event, data in re.findall(r"^event: (\w+)\ndata: (.*)$", text, re.M)]


def examples(readme: Path = ROOT / "README.md") -> list[Example]:
    text = readme.read_text(encoding="utf-8")
    found = []
    for command, path, answer in API_EXAMPLE.findall(text):
        body = json.loads(re.search(r"-d '(.*?)'", command.replace("\\\n", " "), re.S).group(1))
        shown = stream_events(answer)[-1][1] if body.get("stream") else json.loads(answer)
        found.append(Example(path, body, shown))
    for line, printed in CLI_EXAMPLE.findall(text):
        found.append(Example("charserve correct", {"text": line}, printed.strip()))
    return found


class Answerer:
    """The app on the bundled models, in process: exactly what a server on this machine would answer."""

    def __init__(self, paths: set[str]) -> None:
        from fastapi.testclient import TestClient

        from app.main import create_app
        from app.settings import Settings

        wanted = {"/correct": "speller", "charserve correct": "speller", "/classify": "classifier", "/poem": "poet"}
        models = sorted({wanted[p] for p in paths})
        # No deadline to speak of: under emulation a model call takes minutes, and the answer is what counts.
        settings = Settings(models=models, access_log=False, request_deadline_s=DEADLINE_S)
        self.client = TestClient(create_app(settings))
        self.client.__enter__()

    def close(self) -> None:
        self.client.__exit__(None, None, None)

    def answer(self, example: Example) -> Any:
        if example.path == "charserve correct":
            return command_line(["correct"], example.body["text"] + "\n").rstrip("\n")
        if example.body.get("stream"):
            got = self.client.post(example.path, json=example.body)
            got.raise_for_status()
            return stream_events(got.text)[-1][1]
        return self.post(example.path, example.body)

    def post(self, path: str, body: dict) -> Any:
        got = self.client.post(path, json=body)
        got.raise_for_status()
        return got.json()


def command_line(argv: list[str], stdin: str) -> str:
    """What `charserve ARGV` prints for this input, run in this process."""
    from app.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), unittest.mock.patch("sys.stdin", io.StringIO(stdin)):
        status = main(argv)
    if status:
        raise RuntimeError(f"charserve {' '.join(argv)} exited with {status}")
    return out.getvalue()


def words_of(correction: dict) -> dict:
    """A correction without its numbers: place, words, kind, status and its likely alternatives."""
    likely = [a["suggestion"] for a in correction["alternatives"] if a["confidence"] >= LIKELY]
    return {k: v for k, v in correction.items() if k not in ("confidence", "alternatives")} | {"likely": likely}


def numbers_of(correction: dict) -> list[float]:
    return [correction["confidence"], *(a["confidence"] for a in correction["alternatives"])]


def close(a: list[float], b: list[float], tolerance: float) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


def same_answer(path: str, got: Any, shown: Any) -> bool:
    """The same answer up to the digits that int8 kernels move between CPUs."""
    if path == "/correct":
        pairs = list(zip(got["results"], shown["results"], strict=False))
        return len(got["results"]) == len(shown["results"]) and all(
            ours["text"] == theirs["text"]
            and [words_of(c) for c in ours["corrections"]] == [words_of(c) for c in theirs["corrections"]]
            and all(
                close(numbers_of(a), numbers_of(b), CONFIDENCE_TOLERANCE)
                for a, b in zip(ours["corrections"], theirs["corrections"], strict=True)
            )
            for ours, theirs in pairs
        )
    if path == "/classify":
        return len(got["results"]) == len(shown["results"]) and all(
            ours["label"] == theirs["label"]
            and ours["scores"].keys() == theirs["scores"].keys()
            and close(list(ours["scores"].values()), [theirs["scores"][k] for k in ours["scores"]], SCORE_TOLERANCE)
            for ours, theirs in zip(got["results"], shown["results"], strict=True)
        )
    return got == shown  # a poem, a printed line: no numbers to move


def verdict(example: Example, got: Any) -> str:
    if got == example.shown:
        return "identical"
    return "same" if same_answer(example.path, got, example.shown) else "different"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--save", type=Path, help="write every example's answer here (JSON), to diff two machines")
    args = parser.parse_args(argv)

    found = examples(args.readme)
    answerer = Answerer({e.path for e in found})
    try:
        got = [answerer.answer(e) for e in found]
    finally:
        answerer.close()
    verdicts = [verdict(e, g) for e, g in zip(found, got, strict=True)]
    for example, answer, said in zip(found, got, verdicts, strict=True):
        print(f"{said:9s} {example.name}")
        if said != "identical":
            print(f"          README: {json.dumps(example.shown, ensure_ascii=False)}")
            print(f"          here:   {json.dumps(answer, ensure_ascii=False)}")
    if args.save:
        saved = [{"example": e.name, "verdict": v, "answer": g} for e, v, g in zip(found, verdicts, got, strict=True)]
        args.save.write_text(json.dumps(saved, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return 1 if "different" in verdicts else 0


if __name__ == "__main__":
    sys.exit(main())
