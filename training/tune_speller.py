"""Choose the speller's decoding (beam, prior weight, edit and out-of-dictionary penalties, pruning) on validation.

Never on held-out data.

    python -m training.tune_speller --data ../shared/data/spelling --write-manifest

Runs the served decoder (app.adapters.speller.model) in-process over every setting in the grid and records the
best in models/speller/manifest.json under "decoding", with the grid's figures. Pruning margins are tried
last, on the best setting: the narrowest margin that loses no validation accuracy is kept, since a narrower
one only ever decodes fewer rows.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from app.adapters.speller.model import Speller
from app.settings import Settings
from training import speller_data
from training.export.manifest import record_in_manifest

DECODING = ("beam_size", "prior_weight", "edit_penalty", "oov_penalty", "prune_margin")  # what a setting is


class CountingSession:
    """A session of the speller, counting its calls and the rows it is given (`rows_of` its input): how much
    decoding a setting costs, whatever the machine's speed."""

    def __init__(self, session, rows_of: str = "token") -> None:
        self.session, self.rows_of = session, rows_of
        self.calls, self.rows = 0, 0

    def run(self, outputs, feeds: dict):
        self.calls += 1
        self.rows += len(feeds[self.rows_of])
        return self.session.run(outputs, feeds)

    def __getattr__(self, name: str):
        return getattr(self.session, name)


def accuracy(speller: Speller, pairs: list[tuple[str, str]]) -> float:
    """Each misspelling as a text of its own, through the same path /correct takes."""
    results = speller.correct_texts([w for w, _ in pairs])
    return sum(r.text == t for r, (_, t) in zip(results, pairs, strict=True)) / len(pairs)


def measure(
    speller: Speller,
    valid: list[tuple[str, str]],
    beam: int,
    weight: float,
    edit: float,
    oov: float | None,
    margin: float | None = None,
) -> dict:
    """Validation accuracy of one setting, its seconds, and the decoder rows it ran (speller.decoder counts)."""
    speller.set_decoding(beam, weight, edit, oov, margin)
    started, rows = time.perf_counter(), speller.decoder.rows
    acc = accuracy(speller, valid)
    result = {"beam_size": beam, "prior_weight": weight, "edit_penalty": edit, "oov_penalty": oov,
              "prune_margin": margin, "valid_accuracy": round(acc, 4),
              "seconds": round(time.perf_counter() - started, 1),
              "decoder_rows": speller.decoder.rows - rows}  # fmt: skip
    print(json.dumps(result), flush=True)
    return result


def best_setting(grid: list[dict]) -> dict:
    """The most accurate setting on validation; among equals the narrowest beam, then one that answers from the
    dictionary alone, then the narrowest pruning margin (each of them decodes less)."""

    def margin(setting: dict) -> float:
        return math.inf if setting.get("prune_margin") is None else setting["prune_margin"]

    return max(grid, key=lambda g: (g["valid_accuracy"], -g["beam_size"], g["oov_penalty"] is None, -margin(g)))


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
    parser.add_argument(
        "--prune-margins", type=float, nargs="*", default=[16.0, 12.0, 11.0, 10.0, 9.0, 8.0],
        help="tried on the best setting; the narrowest that loses no validation accuracy is kept",
    )  # fmt: skip
    parser.add_argument("--write-manifest", action="store_true")
    args = parser.parse_args(argv)

    valid = speller_data.build(args.data).valid
    grid = []
    speller = Speller(args.model_dir, Settings())
    speller.decoder = CountingSession(speller.decoder)
    for beam in args.beams:
        for weight in args.weights if beam > 1 else [0.0]:
            for penalty in args.edit_penalties if beam > 1 else [0.0]:
                grid.append(measure(speller, valid, beam, weight, penalty, None))
    best = best_setting(grid)
    for oov in args.oov_penalties:
        grid.append(measure(speller, valid, best["beam_size"], best["prior_weight"], best["edit_penalty"], oov))
    best = best_setting(grid)
    for margin in args.prune_margins:
        grid.append(measure(speller, valid, *(best[key] for key in DECODING[:4]), margin))
    best = best_setting(grid)
    print("best:", json.dumps(best))
    if args.write_manifest:
        record_in_manifest(
            args.model_dir / "manifest.json",
            "decoding",
            {
                **{key: best[key] for key in DECODING},
                "chosen_by": "python -m training.tune_speller --data ../shared/data/spelling --write-manifest",
                "valid_pairs": len(valid),
                "grid": grid,
            },
        )


if __name__ == "__main__":
    main()
