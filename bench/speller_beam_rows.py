"""How much decoding the speller does: decoder calls, rows and time over the validation misspellings, in
batches of a few sizes (64 words a call is a full batch; 1 and 4 are what a lightly loaded server gathers), in
process on one core, with the answers' accuracy and how many answers differ from those of the largest batch
(with int8 graphs a word's answer can depend on what shares its batch: ONNX Runtime quantizes each call's
activations with that call's own range).

    python -m bench.speller_beam_rows --data ../shared/data/spelling --repeats 3

Writes docs/speller_beam_rows.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from app.settings import Settings
from app.speller import Speller
from bench.harness import run_record, save_report
from training import speller_data


class CountingSession:
    """The decoder session, counting its calls and the rows it is given."""

    def __init__(self, session) -> None:
        self.session, self.calls, self.rows = session, 0, 0

    def run(self, outputs, feeds: dict):
        self.calls += 1
        self.rows += len(feeds["token"])
        return self.session.run(outputs, feeds)

    def __getattr__(self, name: str):
        return getattr(self.session, name)


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
    speller.decoder = counting
    speller.correct_words(words[:64])  # warm up
    runs, reference = [], None
    for size in args.batch_sizes:
        seconds, answers = [], []
        for _ in range(args.repeats):
            counting.calls = counting.rows = 0
            started, answers = time.perf_counter(), []
            for i in range(0, len(words), size):
                answers += speller.correct_words(words[i : i + size])
            seconds.append(round(time.perf_counter() - started, 2))
        reference = reference or answers
        right = sum(a == t.lower() for a, (_, t) in zip(answers, valid, strict=True))
        runs.append({
            "batch": size,
            "decoder_calls": counting.calls,
            "decoder_rows": counting.rows,
            "seconds": seconds,
            "valid_accuracy": round(right / len(valid), 4),
            "answers_unlike_first_batch_size": sum(a != b for a, b in zip(answers, reference, strict=True)),
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
    save_report(args.out, report, text)


if __name__ == "__main__":
    main()
