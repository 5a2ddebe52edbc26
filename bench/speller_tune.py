"""Choose the speller's decoding (beam, prior weight, edit and out-of-dictionary penalties) on validation.

Never on held-out data.

    python -m bench.speller_tune --data ../shared/data/spelling --write-manifest

Runs the served decoder (app.speller) in-process over every setting in the grid, counting the decoder rows
each computes (what a word costs: the decoder is most of the serving time), and records the choice in
models/speller/manifest.json under "decoding", with the grid's figures.

The choice is the cheapest setting, in decoder rows, whose validation accuracy is within one standard error
of the most accurate one's (the one-standard-error rule of model selection): a wider beam that is better by
less than the validation set can tell costs every request its rows and buys nothing measurable.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from app.settings import Settings
from app.speller import Speller
from bench.harness import record_in_manifest
from bench.speller_beam_rows import CountingSession
from training import speller_data


def accuracy(speller: Speller, pairs: list[tuple[str, str]]) -> float:
    """Each misspelling as a text of its own, through the same path /correct takes."""
    results = speller.correct_texts([w for w, _ in pairs])
    return sum(r.text == t for r, (_, t) in zip(results, pairs, strict=True)) / len(pairs)


def measure(
    speller: Speller, valid: list[tuple[str, str]], beam: int, weight: float, edit: float, oov: float | None
) -> dict:
    speller.beam_size, speller.prior_weight, speller.edit_penalty, speller.oov_penalty = beam, weight, edit, oov
    speller.decoder.rows = 0
    started = time.perf_counter()
    acc = accuracy(speller, valid)
    result = {"beam_size": beam, "prior_weight": weight, "edit_penalty": edit, "oov_penalty": oov,
              "valid_accuracy": round(acc, 4), "decoder_rows": speller.decoder.rows,
              "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    print(json.dumps(result), flush=True)
    return result


def choose(grid: list[dict], pairs: int) -> tuple[dict, float]:
    """The setting with the fewest decoder rows among those within one standard error of the best accuracy
    (ties: the more accurate), and that standard error."""
    top = max(g["valid_accuracy"] for g in grid)
    error = math.sqrt(top * (1 - top) / pairs)
    close = [g for g in grid if g["valid_accuracy"] >= top - error]
    return min(close, key=lambda g: (g["decoder_rows"], -g["valid_accuracy"])), error


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/spelling"))
    parser.add_argument("--model-dir", type=Path, default=Path("models/speller"))
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 8, 10, 12, 16, 24])
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    parser.add_argument("--edit-penalties", type=float, nargs="+", default=[0.0, 3.0, 8.0])
    parser.add_argument(
        "--oov-penalties", type=float, nargs="*", default=[0.0, 2.0, 5.0, 10.0],
        help="tried on each beam's most accurate setting",
    )  # fmt: skip
    parser.add_argument("--write-manifest", action="store_true")
    args = parser.parse_args(argv)

    valid = speller_data.build(args.data).valid
    grid = []
    speller = Speller(args.model_dir, Settings())
    speller.decoder = CountingSession(speller.decoder)
    for beam in args.beams:
        searched = [
            measure(speller, valid, beam, weight, penalty, None)
            for weight in (args.weights if beam > 1 else [0.0])
            for penalty in (args.edit_penalties if beam > 1 else [0.0])
        ]
        best = max(searched, key=lambda g: g["valid_accuracy"])
        for oov in args.oov_penalties:
            searched.append(measure(speller, valid, beam, best["prior_weight"], best["edit_penalty"], oov))
        grid += searched
    best, error = choose(grid, len(valid))
    print("chosen:", json.dumps(best), f"(one standard error: {error:.4f})")
    if args.write_manifest:
        record_in_manifest(
            args.model_dir / "manifest.json",
            "decoding",
            {
                "beam_size": best["beam_size"],
                "prior_weight": best["prior_weight"],
                "edit_penalty": best["edit_penalty"],
                "oov_penalty": best["oov_penalty"],
                "chosen_by": "python -m bench.speller_tune --data ../shared/data/spelling --write-manifest",
                "rule": "the fewest decoder rows within one standard error of the best validation accuracy",
                "standard_error": round(error, 4),
                "valid_pairs": len(valid),
                "grid": grid,
            },
        )


if __name__ == "__main__":
    main()
