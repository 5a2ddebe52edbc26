"""Which trained classifiers to average: every subset of the given runs (of at most --max-members), scored on
validation (never test).

    python -m training.classifier_ensemble runs/cls_A runs/cls_B runs/cls_C --out docs/classifier_ensemble.md
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import torch

from training import classifier_data
from training.classifier import checkpoint_lexicon, clip, predict, scores
from training.export.classifier import load_classifier


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", help="training output folders, each with best.pt")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/dbpedia"))
    parser.add_argument("--out", type=Path, help="also write the table here (docs/classifier_ensemble.md)")
    parser.add_argument(
        "--max-members", type=int, default=0,
        help="only subsets this small (0: any): each member adds its weights to the artifact and a model call",
    )  # fmt: skip
    args = parser.parse_args(argv)
    valid = classifier_data.build(args.data).valid
    truth = [y for _, y in valid]
    probs = {}
    for run in args.runs:
        model, state = load_classifier(run / "best.pt")
        char_id = {ch: i for i, ch in enumerate(state["vocab"])}
        names = [clip(n, state["max_len"], state["keep_end"]) for n, _ in valid]
        probs[run] = predict(model, names, char_id, checkpoint_lexicon(state))
    rows = []
    for size in range(1, (args.max_members or len(args.runs)) + 1):
        for combo in itertools.combinations(args.runs, size):
            found = scores(truth, torch.stack([probs[r] for r in combo]).mean(dim=0).argmax(dim=1).tolist())
            rows.append((found["macro_f1"], found["accuracy"], " + ".join(r.name for r in combo)))
    lines = ["| members | valid accuracy | valid macro-F1 |", "|---|---|---|"]
    lines += [f"| {names} | {acc:.4f} | {f1:.4f} |" for f1, acc, names in sorted(rows, reverse=True)]
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
