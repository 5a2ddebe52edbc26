"""Choose the speller's decoding (beam, prior weight, edit and out-of-dictionary penalties) on validation.

Never on held-out data.

    python -m bench.speller_tune --data ../shared/data/spelling --write-manifest

Runs the served decoder (app.speller) in-process over every setting in the grid and records the
best in models/speller/manifest.json under "decoding", with the grid's figures.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from app.settings import Settings
from app.speller import Speller
from bench.harness import record_in_manifest
from training import speller_data


def accuracy(speller: Speller, pairs: list[tuple[str, str]]) -> float:
    """Each misspelling as a text of its own, through the same path /correct takes."""
    results = speller.correct_texts([w for w, _ in pairs])
    return sum(r.text == t for r, (_, t) in zip(results, pairs, strict=True)) / len(pairs)


def measure(
    speller: Speller, valid: list[tuple[str, str]], beam: int, weight: float, edit: float, oov: float | None
) -> dict:
    speller.set_decoding(beam, weight, edit, oov)
    started = time.perf_counter()
    acc = accuracy(speller, valid)
    result = {"beam_size": beam, "prior_weight": weight, "edit_penalty": edit, "oov_penalty": oov,
              "valid_accuracy": round(acc, 4), "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    print(json.dumps(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/spelling"))
    parser.add_argument("--model-dir", type=Path, default=Path("models/speller"))
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    parser.add_argument("--edit-penalties", type=float, nargs="+", default=[0.0, 3.0, 8.0])
    parser.add_argument(
        "--oov-penalties", type=float, nargs="*", default=[0.0, 2.0, 5.0, 10.0],
        help="tried on the grid's best setting; kept only if one beats answering from the dictionary alone",
    )  # fmt: skip
    parser.add_argument("--write-manifest", action="store_true")
    args = parser.parse_args(argv)

    valid = speller_data.build(args.data).valid
    grid = []
    speller = Speller(args.model_dir, Settings())
    for beam in args.beams:
        for weight in args.weights if beam > 1 else [0.0]:
            for penalty in args.edit_penalties if beam > 1 else [0.0]:
                grid.append(measure(speller, valid, beam, weight, penalty, None))
    best = max(grid, key=lambda g: (g["valid_accuracy"], -g["beam_size"]))
    for oov in args.oov_penalties:
        grid.append(measure(speller, valid, best["beam_size"], best["prior_weight"], best["edit_penalty"], oov))
    best = max(grid, key=lambda g: (g["valid_accuracy"], -g["beam_size"], g["oov_penalty"] is None))
    print("best:", json.dumps(best))
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
                "valid_pairs": len(valid),
                "grid": grid,
            },
        )


if __name__ == "__main__":
    main()
