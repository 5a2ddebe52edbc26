"""What a perplexity counts: the poet's test perplexity per character, and the same predictions counted the
way a training loop over fixed-width padded rows counts them.

    python -m bench.poet_units --checkpoint runs/poet/best.pt runs/poet_opt_*/best.pt

Ours is exp(mean negative log-likelihood) over every character of each test poem and its <eos>. A loop that
stores each poem as a row of W positions, padding first (<pad>…<pad> <bos> poem <eos>, longer poems cut at
W), and averages its loss over every position of the row also counts the padding, which a model that has seen
it predicts almost for free. This bench takes each model's own per-character losses and recounts them that
way: a padding position costs nothing, and the one place where padding gives way to <bos> costs
-log P(poem length), the lengths' distribution on the training split (what a model that counts positions
can know at best). So a padded figure here is what such a loop would report for this same model, nearly.
Writes docs/poet_units.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.harness import run_record
from training import poet_data
from training.export import load_poet
from training.poet import chunks, pad
from training.poet_model import PoetLM

WIDTHS = (100, 125, 150, 200)
PUBLISHED = {"sgd": 35.9, "momentum": 27.5, "adagrad": 23.5, "adam": 22.7}  # the table, full size


@torch.no_grad()
def position_nll(model: PoetLM, poems: list[list[int]], batch_size: int = 64, bptt: int = 256) -> list[np.ndarray]:
    """Each encoded poem's (<bos> … <eos>) negative log-likelihood at every predicted position, in input order."""
    model.eval()
    order = sorted(range(len(poems)), key=lambda i: len(poems[i]))
    found: list[np.ndarray] = [np.empty(0)] * len(poems)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        inputs, targets = pad([poems[i] for i in rows])
        state, parts = None, []
        for x, y in chunks(inputs, targets, bptt):
            logits, state = model(x, state)
            parts.append(nn.functional.cross_entropy(logits.transpose(1, 2), y, reduction="none"))
        nll = torch.cat(parts, dim=1).numpy()
        for row, i in enumerate(rows):
            found[i] = nll[row, : len(poems[i]) - 1]
    return found


def length_cost(train_lengths: list[int], width: int) -> dict[int, float]:
    """-log P(n) of an encoded length n shorter than the row, from the training split (add-one smoothed):
    what it costs at best to predict where a row's padding ends and its poem begins."""
    counts = Counter(n for n in train_lengths if n < width)
    total = sum(counts.values()) + width
    return {n: -math.log((counts[n] + 1) / total) for n in range(1, width)}


def padded_perplexity(nll: list[np.ndarray], width: int, start_cost: dict[int, float]) -> float:
    """The same losses counted over rows of `width` positions (width - 1 predictions each), padding first."""
    total = 0.0
    for losses in nll:
        n = len(losses) + 1  # encoded length, <bos> and <eos> included
        if n < width:
            total += float(losses.sum()) + start_cost[n]  # padding free; <bos> where the padding ends
        else:
            total += float(losses[: width - 1].sum())  # cut at the row's end; no padding
    return math.exp(total / (len(nll) * (width - 1)))


def measure(checkpoint: Path, data: poet_data.PoetData, widths: tuple[int, ...]) -> dict:
    model, state = load_poet(checkpoint)
    char_id = {ch: i for i, ch in enumerate(state["vocab"])}
    test = [poet_data.encode(p.text, char_id) for p in data.test]
    train_lengths = [len(p.text) + 2 for p in data.train]
    nll = position_nll(model, test)
    per_char = math.exp(float(sum(x.sum() for x in nll)) / sum(len(x) for x in nll))
    return {
        "checkpoint": str(checkpoint),
        "optimizer": state["args"]["optimizer"],
        "per_character": round(per_char, 2),
        "padded": {str(w): round(padded_perplexity(nll, w, length_cost(train_lengths, w)), 2) for w in widths},
    }


def markdown(report: dict) -> str:
    widths = report["widths"]
    lines = [
        "# What a perplexity counts",
        "",
        f"Measured {report['measured']} with `{report['command']}` on the test split "
        f"({report['test_poems']:,} poems). See the module's docstring for the counting.",
        "",
        "| model | per character (ours) | " + " | ".join(f"padded rows of {w}" for w in widths) + " | published |",
        "|---|---|" + "---|" * len(widths) + "---|",
    ]
    for row in report["models"]:
        published = PUBLISHED.get(row["optimizer"] or "", "")
        name = row["checkpoint"]
        cells = " | ".join(f"{row['padded'][str(w)]:.1f}" for w in widths)
        lines.append(f"| `{name}` ({row['optimizer']}) | {row['per_character']:.1f} | {cells} | {published} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, nargs="+", required=True, help="poet training checkpoints")
    parser.add_argument("--data", type=Path, help="a folder of poet.tang.*.json (default: fetch with npm)")
    parser.add_argument("--widths", type=int, nargs="+", default=list(WIDTHS))
    parser.add_argument("--docs", type=Path, default=Path("docs"))
    args = parser.parse_args(argv)
    _, first = load_poet(args.checkpoint[0])
    data = poet_data.build(args.data or poet_data.fetch(), first["data"]["script"], first["data"]["min_count"])
    report = {
        **run_record("bench.poet_units", argv),
        "test_poems": len(data.test),
        "widths": args.widths,
        "models": [measure(c, data, tuple(args.widths)) for c in args.checkpoint],
    }
    args.docs.mkdir(parents=True, exist_ok=True)
    (args.docs / "poet_units.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.docs / "poet_units.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
