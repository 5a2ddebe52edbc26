"""How much decoding the speller does: decoder calls, rows and time over the validation misspellings, in
batches of a few sizes (64 words a call is a full batch; 1 and 4 are what a lightly loaded server gathers), in
process on one core, with the answers' accuracy and how many answers differ from those of the largest batch
(with int8 graphs a word's answer can depend on what shares its batch: ONNX Runtime quantizes each call's
activations with that call's own range). Each batch size's time is split four ways, per word: the encoder
graph, the decoder graph, the compiled beam step (app/adapters/speller/beam_step.py)
and the rest (the arrays around them).

    python -m bench.speller_beam_rows --data ../shared/data/spelling --repeats 3

Writes docs/speller_beam_rows.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import app.adapters.speller.model
from app.adapters.speller.model import Speller
from app.settings import Settings
from bench.harness import run_record, save_report
from training import speller_data


class CountingSession:
    """A session of the speller, counting its calls, the rows it is given (`rows_of` its input) and its seconds."""

    def __init__(self, session, rows_of: str = "token") -> None:
        self.session, self.rows_of = session, rows_of
        self.calls, self.rows, self.seconds = 0, 0, 0.0

    def run(self, outputs, feeds: dict):
        self.calls += 1
        self.rows += len(feeds[self.rows_of])
        started = time.perf_counter()
        try:
            return self.session.run(outputs, feeds)
        finally:
            self.seconds += time.perf_counter() - started

    def __getattr__(self, name: str):
        return getattr(self.session, name)


class TimedCall:
    """A function, adding up the seconds spent in it."""

    def __init__(self, func) -> None:
        self.func, self.seconds = func, 0.0

    def __call__(self, *args):
        started = time.perf_counter()
        try:
            return self.func(*args)
        finally:
            self.seconds += time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/spelling"))
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--core", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 4, 1])
    parser.add_argument("--out", type=Path, default=Path("docs/speller_beam_rows.json"))
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {args.core})
    valid = speller_data.build(args.data).valid
    words = [w.lower() for w, _ in valid]
    speller = Speller(args.models_dir / "speller", Settings(intra_op_threads=1))
    counting = CountingSession(speller.decoder)
    encoder = CountingSession(speller.encoder, rows_of="src")
    speller.decoder, speller.encoder = counting, encoder
    step = TimedCall(app.adapters.speller.model.beam_step)
    app.adapters.speller.model.beam_step = step  # what Speller._beam_step calls; this process only runs the bench
    speller.correct_words(words[:64])  # warm up
    runs, reference = [], None
    for size in args.batch_sizes:
        seconds, answers = [], []
        encoder.seconds = counting.seconds = step.seconds = 0.0
        for _ in range(args.repeats):
            counting.calls = counting.rows = 0
            started, answers = time.perf_counter(), []
            for i in range(0, len(words), size):
                answers += speller.correct_words(words[i : i + size])
            seconds.append(round(time.perf_counter() - started, 2))
        reference = reference or answers
        per_word = 1e6 / (len(words) * args.repeats)
        split = {"encoder": encoder.seconds, "decoder": counting.seconds, "beam_step": step.seconds}
        split["rest"] = sum(seconds) - sum(split.values())
        right = sum(a == t.lower() for a, (_, t) in zip(answers, valid, strict=True))
        runs.append({
            "batch": size,
            "decoder_calls": counting.calls,
            "decoder_rows": counting.rows,
            "seconds": seconds,
            "valid_accuracy": round(right / len(valid), 4),
            "answers_unlike_first_batch_size": sum(a != b for a, b in zip(answers, reference, strict=True)),
            "us_a_word": {part: round(t * per_word, 1) for part, t in split.items()},
        })  # fmt: skip
    report = {
        **run_record("bench.speller_beam_rows", argv),
        "words": len(words),
        "precision": speller.precision,
        "runs": runs,
    }
    first = args.batch_sizes[0]
    text = (
        f"# The speller's beam: decoding done\n\nMeasured {report['measured']} with `{report['command']}`: the "
        f"bundled speller ({report['precision']} graphs) over {report['words']:,} validation misspellings, one "
        "core.\n\n"
        f"| words a call | decoder calls | decoder rows | seconds (each repeat) | validation accuracy | answers unlike "
        f"those of batches of {first} |\n|---|---|---|---|---|---|\n"
    )
    for r in runs:
        text += (
            f"| {r['batch']} | {r['decoder_calls']:,} | {r['decoder_rows']:,} | {', '.join(map(str, r['seconds']))} | "
            f"{r['valid_accuracy']:.4f} | {r['answers_unlike_first_batch_size']} |\n"
        )
    text += (
        "\nWhere a word's time goes, µs a word (all repeats): the encoder graph, the decoder graph (both searches), "
        "the compiled beam step, and the rest of the Python and numpy around them.\n\n"
        "| words a call | encoder | decoder | beam step | the rest | all |\n|---|---|---|---|---|---|\n"
    )
    for r in runs:
        us = r["us_a_word"]
        text += (
            f"| {r['batch']} | {us['encoder']} | {us['decoder']} | {us['beam_step']} | {us['rest']} | "
            f"{round(sum(us.values()), 1)} |\n"
        )
    save_report(args.out, report, text)


if __name__ == "__main__":
    main()
