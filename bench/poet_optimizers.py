"""The optimizer comparison of the poet's design, reproduced.

    python -m bench.poet_optimizers                         # reduced size: about 8 minutes a run on 2 CPU cores
    python -m bench.poet_optimizers --size full --jobs 4    # the published design; the four runs side by side on a GPU

Same model, data, seed, epochs and learning-rate schedule for each of SGD, momentum, Adagrad and Adam;
only the optimizer (and its usual learning rate) changes. Test perplexity on the whole test split.
The published figures are for the full design (2-layer LSTM of 512, whole corpus). `--size reduced` trains a
smaller model on a part of the training poems, so compare the order and the gaps there, not the values.
Writes docs/poet_optimizers.{json,md,png} (reduced) or docs/poet_optimizers_full.{json,md,png} (full).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.harness import save_report
from training.poet import DEFAULT_LR

PUBLISHED = {"sgd": 35.9, "momentum": 27.5, "adagrad": 23.5, "adam": 22.7}
SETUPS = {
    "reduced": ["--hidden", "256", "--emb", "128", "--layers", "2", "--dropout", "0.1", "--limit", "10000",
                "--batch-size", "16", "--epochs", "3", "--patience", "3", "--seed", "0"],
    # The published design on the whole corpus; --max-minutes bounds a run whose epochs stop improving slowly.
    "full": ["--hidden", "512", "--emb", "256", "--layers", "2", "--dropout", "0.2", "--batch-size", "64",
             "--epochs", "25", "--patience", "3", "--seed", "0", "--max-minutes", "8"],
}  # fmt: skip
DESCRIBED = {
    "reduced": "a 2-layer LSTM of 256 (embedding 128) on the first 10,000 training poems, 3 epochs",
    "full": "the published design, a 2-layer LSTM of 512 (embedding 256, dropout 0.2) on all 45,113 training "
    "poems, 64 poems a step, up to 25 epochs (early stop after 3 without a better validation perplexity, or 8 "
    "minutes)",
}


def train(setup: list[str], name: str, out: Path, data: Path | None) -> dict:
    """One run of training.poet in its own process (so runs can share a GPU side by side); its summary."""
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "training.poet", *setup, "--optimizer", name, "--out", str(out)]
    with open(out / "train.log", "w") as log:
        subprocess.run([*command, *(["--data", str(data)] if data else [])], stdout=log, stderr=log, check=True)
    return json.loads((out / "summary.json").read_text())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="a folder of poet.tang.*.json (default: fetch with npm)")
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--docs", type=Path, default=Path("docs"))
    parser.add_argument("--optimizers", nargs="+", default=list(PUBLISHED))
    parser.add_argument("--size", choices=sorted(SETUPS), default="reduced")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    args = parser.parse_args(argv)

    setup, suffix = SETUPS[args.size], "" if args.size == "reduced" else f"_{args.size}"
    with ThreadPoolExecutor(args.jobs) as pool:
        summaries = pool.map(lambda n: train(setup, n, args.runs / f"poet_opt{suffix}_{n}", args.data), args.optimizers)
    results = {}
    for name, summary in zip(args.optimizers, summaries, strict=True):
        results[name] = {
            "lr": DEFAULT_LR[name],
            "test_perplexity": round(summary["test_perplexity"], 2),
            "best_valid_perplexity": round(summary["best_valid_perplexity"], 2),
            "valid_curve": [round(x, 2) for x in summary["history"]["perplexity/valid"]],
            "train_curve": [round(x, 2) for x in summary["history"]["perplexity/train"]],
            "best_epoch": summary["best_epoch"],
            "stopped_by": stopped_by(summary),
        }
    report = {
        "measured": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.poet_optimizers", *(argv if argv is not None else sys.argv[1:])]),
        "size": args.size,
        "device": summary["args"].get("device", "cpu"),
        "setup": " ".join(setup),
        "results": results,
        "published": PUBLISHED,
    }
    args.docs.mkdir(parents=True, exist_ok=True)
    stem = args.docs / f"poet_optimizers{suffix}"
    save_report(stem.with_suffix(".json"), report, markdown(report))
    plot(results, stem.with_suffix(".png"), args.size)


def stopped_by(summary: dict) -> str:
    """What ended a run: its epochs, early stopping, or the --max-minutes bound with the curve still falling."""
    args, curve = summary["args"], summary["history"]["perplexity/valid"]
    if len(curve) >= int(args["epochs"]):
        return f"{args['epochs']} epochs"
    if len(curve) - summary["best_epoch"] >= int(args["patience"]):
        return "early stop"
    return f"the {float(args['max_minutes']):g}-minute bound"


def plot(results: dict, path: Path, size: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in results.items():
        ax.plot(range(1, len(r["valid_curve"]) + 1), r["valid_curve"], marker="o", label=f"{name} (lr {r['lr']:g})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation perplexity")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"poet: optimizers compared ({size} size)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def markdown(report: dict) -> str:
    lines = [
        "# Poet: the optimizer comparison, reproduced",
        "",
        "*Generated by `bench/poet_optimizers.py`.*",
        "",
        f"Measured {report['measured']} with `{report['command']}` (training on {report.get('device', 'cpu')}). "
        f"Each run: `python -m training.poet {report['setup']} --optimizer NAME`: "
        f"{DESCRIBED[report.get('size', 'reduced')]}, the learning rate divided by 4 after an epoch without a "
        "better validation perplexity; test perplexity per character (each poem's characters and its end) on "
        "the whole test split, from the epoch best on validation. The published figures are for the full "
        "design (2-layer LSTM of 512 on the whole corpus); see docs/poet_units.md on what unit they count in.",
        "",
        "| optimizer | learning rate | validation perplexity by epoch | stopped by | test perplexity (ours) "
        "| published |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in report["results"].items():
        curve = ", ".join(f"{x:.1f}" for x in r["valid_curve"])
        stopped = r.get("stopped_by", "—")
        lines.append(f"| {name} | {r['lr']:g} | {curve} | {stopped} | **{r['test_perplexity']:.2f}** | "
                     f"{report['published'][name]} |")  # fmt: skip
    suffix = "" if report.get("size", "reduced") == "reduced" else f"_{report['size']}"
    ours = sorted(report["results"], key=lambda n: report["results"][n]["test_perplexity"])
    published = sorted(report["published"], key=report["published"].get)
    lines += [
        "",
        f"Order, best first: ours {' < '.join(ours)}; published {' < '.join(published)}.",
        "",
        f"![validation perplexity by epoch](poet_optimizers{suffix}.png)",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
