"""What the benches share: a client for the API (a running server or the app in-process), the README's
generated blocks, and the head and files of a report."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


@contextmanager
def api_client(url: str | None, models_dir: Path, model: str) -> Iterator[httpx.Client]:
    """The server at `url`, or, without one, the app in-process on `models_dir` with only `model` loaded."""
    if url:
        with httpx.Client(base_url=url, timeout=60) as client:
            yield client
        return
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.settings import Settings

    with TestClient(create_app(Settings(models_dir=models_dir, models=[model]))) as client:
        yield client


def quality_parser(doc: str | None, data: Path | None, data_help: str | None = None) -> argparse.ArgumentParser:
    """The options every quality bench takes: its data (`data` by default), a server or the app in-process, and
    the models folder."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=data, help=data_help)
    parser.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8000 (default: in-process)")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    return parser


def pinned_parser(doc: str | None, port: int) -> argparse.ArgumentParser:
    """The options every bench that starts a server takes: the cores the server and the load generator run on
    (apart, so that neither slows the other), and the server's port."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server-cores", default="0")
    parser.add_argument("--client-cores", default="1")
    parser.add_argument("--port", type=int, default=port)
    return parser


def replace_block(path: Path, name: str, body: str) -> None:
    """Put `body` between `<!-- name:start -->` and `<!-- name:end -->` in `path`; nothing if the markers are absent."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text()
    block = f"{start}\n{body}{end}"
    path.write_text(re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S))


def save_report(out: Path, report: dict, markdown: str) -> None:
    """A bench's report: its JSON at `out`, its Markdown beside it (`out` with `.md`) and on the terminal."""
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown)
    print(markdown)


def run_record(module: str, argv: list[str] | None) -> dict[str, str]:
    """When a bench ran and the command that reproduces it: the head of every report."""
    return {
        "measured": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": f"python -m {module} " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
