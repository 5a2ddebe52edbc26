"""charserve's command line: start the API, or run a model in this process over a file or a pipe.

    charserve serve [--host 127.0.0.1] [--port 8000] [--workers 1]
    echo "Ths sentense has erors" | charserve correct          # one corrected line per input line
    charserve classify names.txt --json                        # one JSON object per line
    charserve poem --form qiyan_jueju --acrostic 春夏秋冬

The models load with the service's own code and settings (CHARSERVE_* variables apply, e.g.
CHARSERVE_POET_PRECISION=float32), and are called as the service's schedulers call them, in batches of lines.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from app.catalog import CATALOG
from app.settings import Settings

BATCH_LINES = 64  # lines per model call: as many as the service gathers from concurrent requests by default
PROGRESS_DELAY_S = 1.0  # the bar appears only for inputs that take longer than this: large files


def load(name: str, settings: Settings) -> Any:
    """The named model's adapter, verified against its manifest as the service loads it."""
    return CATALOG[name].adapter(settings.models_dir / name, settings)


def batches(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def input_lines(stream: IO[str], progress: bool) -> Iterator[str]:
    """The input's lines without their line ends, counted on stderr by a progress bar when asked."""
    lines = (line.rstrip("\r\n") for line in stream)
    if not progress:
        return lines
    from tqdm import tqdm

    return iter(tqdm(lines, unit=" lines", file=sys.stderr, delay=PROGRESS_DELAY_S, dynamic_ncols=True))


def run_lines(
    answer: Callable[[list[str]], list[Any]],
    render: Callable[[str, Any], str],
    stream: IO[str],
    out: IO[str],
    progress: bool,
) -> None:
    """Answer the input line by line, in batches; a blank line is written back as it came, unanswered (the
    models take no empty text). From a terminal each line is answered as soon as it is typed."""
    size = 1 if stream.isatty() else BATCH_LINES
    for batch in batches(input_lines(stream, progress), size):
        texts = [line for line in batch if line.strip()]
        answers = iter(answer(texts) if texts else [])
        for line in batch:
            out.write((render(line, next(answers)) if line.strip() else line) + "\n")
        out.flush()


def render_correction(as_json: bool) -> Callable[[str, Any], str]:
    def render(line: str, corrected: Any) -> str:
        return json.dumps(dataclasses.asdict(corrected), ensure_ascii=False) if as_json else corrected.text

    return render


def render_classification(as_json: bool) -> Callable[[str, Any], str]:
    def render(line: str, found: Any) -> str:
        if as_json:
            return json.dumps({"text": line, **dataclasses.asdict(found)}, ensure_ascii=False)
        return f"{found.label}\t{line}"

    return render


def open_input(path: str | None) -> IO[str]:
    return sys.stdin if path in (None, "-") else open(path, encoding="utf-8")  # closed by the caller


def show_progress(args: argparse.Namespace, stream: IO[str]) -> bool:
    """Asked for, or by default when the bar has somewhere to go and the input is not typed by hand."""
    if args.progress is not None:
        return args.progress
    return sys.stderr.isatty() and not stream.isatty()


def correct(args: argparse.Namespace, settings: Settings) -> int:
    speller = load("speller", settings)
    with open_input(args.file) as stream:
        run_lines(speller.correct_texts, render_correction(args.json), stream, sys.stdout, show_progress(args, stream))
    return 0


def classify(args: argparse.Namespace, settings: Settings) -> int:
    classifier = load("classifier", settings)
    with open_input(args.file) as stream:
        run_lines(classifier.batch, render_classification(args.json), stream, sys.stdout, show_progress(args, stream))
    return 0


def poem(args: argparse.Namespace, settings: Settings) -> int:
    from app.adapters.poet import PoemRequestError

    poet = load("poet", settings)
    try:
        plan = poet.plan(
            args.form,
            prompt=args.prompt,
            acrostic=args.acrostic,
            temperature=args.temperature,
            top_k=args.top_k,
            seed=args.seed,
            max_chars=args.max_chars,
        )
    except PoemRequestError as exc:
        print(f"charserve poem: {exc}", file=sys.stderr)
        return 2
    (written,) = poet.write([plan])
    if args.json:
        print(json.dumps(dataclasses.asdict(written), ensure_ascii=False))
    else:
        print("\n".join(written.lines))
    return 0


def shown_default(default: Any) -> str:
    """A default as a user would write it in the environment."""
    if default is None:
        return "from the manifest"
    if isinstance(default, Path):
        return f"`{default.name}/` of the checkout"
    return f"`{default if isinstance(default, str) else json.dumps(default)}`"


def settings_table() -> str:
    """Every setting as a Markdown table, from app/settings.py's fields: docs/configuration.md is this output."""
    rows = [
        "# Configuration",
        "",
        "Every setting is an environment variable prefixed `CHARSERVE_`; lists are JSON "
        "(`CHARSERVE_MODELS='[\"speller\"]'`). Generated from `app/settings.py` by `charserve settings`.",
        "",
        "| variable | default | meaning |",
        "|---|---|---|",
    ]
    prefix = Settings.model_config.get("env_prefix", "")
    for name, field in Settings.model_fields.items():
        meaning = (field.description or "").replace("|", "\\|")
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        default = extra.get("shown_default") or shown_default(field.default)  # a None that is not the manifest's
        rows.append(f"| `{(prefix + name).upper()}` | {default} | {meaning} |")
    return "\n".join(rows) + "\n"


def show_settings(args: argparse.Namespace, settings: Settings) -> int:
    print(settings_table(), end="")
    return 0


def serve(args: argparse.Namespace, settings: Settings) -> int:
    from app.serve import StartupFailed, serve

    try:
        return serve(args.host, args.port, settings.workers if args.workers is None else args.workers, settings)
    except StartupFailed as exc:
        print(f"charserve serve: {exc}", file=sys.stderr)
        return 1


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="charserve",
        description="Character-level neural text models: serve the API, or run a model on text here.",
        epilog="Settings come from CHARSERVE_* environment variables (docs/configuration.md).",
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("serve", help="start the HTTP API (as `make serve` does)")
    run.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    run.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    run.add_argument(
        "--workers", type=int, default=None,
        help="HTTP worker processes beside one engine process holding the models (default: CHARSERVE_WORKERS, 1)",
    )  # fmt: skip
    run.set_defaults(handler=serve)

    listing = commands.add_parser("settings", help="every CHARSERVE_* setting, its default and meaning (Markdown)")
    listing.set_defaults(handler=show_settings)

    for name, handler, what in (
        ("correct", correct, "correct the English misspellings of each line; prints the corrected lines"),
        ("classify", classify, "tell each line's entity type; prints TYPE<tab>LINE"),
    ):
        sub = commands.add_parser(name, help=what, description=what)
        sub.add_argument("file", nargs="?", help="a UTF-8 text file, one text per line (default: standard input)")
        sub.add_argument("--json", action="store_true", help="one JSON object per line, as the API answers")
        sub.add_argument(
            "--progress",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="a progress bar on stderr (default: when stderr is a terminal and the input is not)",
        )
        sub.set_defaults(handler=handler)

    write = commands.add_parser("poem", help="write a classical Chinese poem")
    forms = ["wuyan_jueju", "qiyan_jueju", "wuyan_lushi", "qiyan_lushi", "free"]
    write.add_argument("--form", choices=forms, default="qiyan_jueju", help="default: %(default)s")
    write.add_argument("--acrostic", default="", help="the first character of each line (藏头诗)")
    write.add_argument("--prompt", default="", help="the poem's first characters")
    write.add_argument("--temperature", type=float, default=0.0, help="0 (default): greedy; above 0: sampled")
    write.add_argument("--top-k", type=int, default=None, help="sample from this many most probable characters")
    write.add_argument("--seed", type=int, default=None, help="fixes a sampled poem")
    write.add_argument("--max-chars", type=int, default=None, help="length bound of the free form")
    write.add_argument("--json", action="store_true", help="the API's answer as JSON")
    write.set_defaults(handler=poem)
    return top


def main(argv: list[str] | None = None) -> int:
    from app.runtime.artifacts import ArtifactError

    args = parser().parse_args(argv)
    try:
        return args.handler(args, Settings())
    except (ArtifactError, OSError) as exc:  # a broken artifact, an unreadable file: say which, no traceback
        print(f"charserve {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
