"""The speller's beam step compiled ahead of time (app/adapters/speller/beam_step_aot.py) against numba's JIT:
the same words through `Speller.answer_words` with each, answers compared, and the seconds each takes in
interleaved rounds (the minimum is the figure: other work only ever adds time). Also how long another thread
stands still while a compiled call runs (the GIL released, or not). The figures of docs/design.md.

    python -m bench.beam_step_aot --data ../shared/data/spelling     # needs numba, C and C++ compilers
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from app.adapters.speller import beam_step
from app.adapters.speller.beam_step_aot import build
from app.adapters.speller.model import Speller
from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def compiled_ahead_of_time(folder: Path, target_cpu: str = "") -> SimpleNamespace:
    """Build the module into `folder` and load it from there."""
    functions = beam_step.ahead_of_time(build(folder, target_cpu))
    assert functions is not None, "the module just built does not load"
    return functions


@contextmanager
def serving(functions: SimpleNamespace) -> Iterator[None]:
    """The speller calls `functions` for its beam step until the block ends."""
    before = {name: getattr(beam_step, name) for name in beam_step.KERNELS}
    try:
        for name in beam_step.KERNELS:
            setattr(beam_step, name, getattr(functions, name))
        yield
    finally:
        for name, function in before.items():
            setattr(beam_step, name, function)


def validation_words(data: Path, count: int, seed: int = 0) -> list[str]:
    """`count` misspellings of the validation split (training/speller_data.py), a fixed sample."""
    from training import speller_data

    return [wrong for wrong, _ in random.Random(seed).sample(speller_data.build(data).valid, count)]


def answers(speller: Speller, words: list[str], batch: int) -> list[Any]:
    return [answer for i in range(0, len(words), batch) for answer in speller.answer_words(words[i : i + batch])]


def longest_pause(function: Callable[..., Any], *args: Any) -> tuple[float, float]:
    """The longest a plain Python loop in this thread stood still while `function(*args)` ran once in another,
    and the seconds that call took: a function that holds the GIL stops this thread for about all of its call
    (as it would stop a server's event loop), one that releases it for a few milliseconds at most."""
    took: list[float] = []

    def work() -> None:
        started = time.perf_counter()
        function(*args)
        took.append(time.perf_counter() - started)

    worker = threading.Thread(target=work)
    last, longest = time.perf_counter(), 0.0
    worker.start()
    while worker.is_alive():
        now = time.perf_counter()
        longest, last = max(longest, now - last), now
    worker.join()
    return longest, took[0]


def long_extend_edits_args(rows: int = 300_000, width: int = 30) -> tuple[np.ndarray, ...]:
    """`extend_edits` arguments for a call of some milliseconds."""
    rng = np.random.default_rng(0)
    edits = np.broadcast_to(np.arange(width + 1, dtype=np.int32), (rows, width + 1)).copy()
    token = rng.integers(97, 123, size=rows)
    target = rng.integers(97, 123, size=(rows, width))
    return edits, edits.copy(), np.zeros(rows, dtype=np.int64), token, target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "spelling")
    parser.add_argument("--words", type=int, default=300, help="validation misspellings")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 64], help="words per answer_words call")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "beam_step_aot.json")
    args = parser.parse_args()

    words = validation_words(args.data, args.words)
    speller = Speller(ROOT / "models" / "speller", Settings())
    jit = beam_step.just_in_time()
    assert jit is not None, "numba is not installed"
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        generic = compiled_ahead_of_time(Path(tmp) / "generic")
        build_seconds = time.perf_counter() - started
        host = compiled_ahead_of_time(Path(tmp) / "host", "host")
        contenders = {"jit": jit, "aot": generic, "aot_host": host}
        found = {}
        for name, functions in contenders.items():
            with serving(functions):
                found[name] = answers(speller, words, 4)  # also compiles the JIT's step before any timing
        same = {name: found[name] == found["jit"] for name in contenders}  # words, alternatives and scores
        seconds: dict[str, dict[str, list[float]]] = {str(b): {name: [] for name in contenders} for b in args.batches}
        for r in range(args.rounds):
            for batch in args.batches:
                order = list(contenders)[r % 3 :] + list(contenders)[: r % 3]  # each goes first as often
                for name in order:
                    with serving(contenders[name]):
                        t = time.perf_counter()
                        answers(speller, words, batch)
                        seconds[str(batch)][name].append(round(time.perf_counter() - t, 4))
        call = long_extend_edits_args()
        pauses = {name: [longest_pause(f.extend_edits, *call) for _ in range(3)] for name, f in contenders.items()}
    report = {
        "measured": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "words": len(words),
        "answers_identical_to_jit": same,
        "aot_build_seconds": round(build_seconds, 1),
        "seconds_min": {b: {n: min(v) for n, v in by.items()} for b, by in seconds.items()},
        "seconds_median": {b: {n: statistics.median(v) for n, v in by.items()} for b, by in seconds.items()},
        "seconds": seconds,
        "longest_pause_of_another_thread_and_call_seconds": {
            name: [[round(pause, 4), round(call, 4)] for pause, call in runs] for name, runs in pauses.items()
        },
        "host_cores": os.cpu_count(),
        "host_load_average_1m": round(os.getloadavg()[0], 2),
        "command": " ".join(["python -m bench.beam_step_aot", *sys.argv[1:]]),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in report if k != "seconds"}, indent=2))


if __name__ == "__main__":
    main()
