"""The classifier's model FLOP utilisation under load, in process (no HTTP), float and int8 graphs side by side.

    python -m bench.classifier_flops --cores 0 --seconds 8 --repeats 3

64 closed-loop clients each send one test name at a time to the dynamic batcher (64 names or 2 ms), which runs
the bundled classifier on one pinned core. The FLOPs of every graph call are counted from its input shape, as
float32 arithmetic even where the int8 graph runs: per member, two LSTMs over every padded position and the
dense layers per name (training/classifier_model.py); against a 2048² SGEMM on the same core in the same run.
Writes docs/classifier_flops.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any

import anyio

from app.adapters.classifier import Classifier
from app.engine.dynamic import DynamicBatcher
from app.settings import Settings
from bench.harness import run_record, save_report
from bench.poem_batching import sgemm_peak
from bench.serving import median_row
from bench.speller_scheduling import closed_loop
from training.classifier_data import read_titles

ROOT = Path(__file__).resolve().parent.parent


def call_flops(configs: list[dict], names: int, width: int) -> float:
    """FLOPs of one call on `names` names padded to `width` characters: multiply-adds × 2."""
    total = 0
    for c in configs:
        width_in = c["emb"] + c.get("lexicon", 0)
        lstm = 4 * c["hidden"] * (width_in + c["hidden"])  # one step of one direction
        features = c["hidden"] * 2 * 2 + (c["ngram_dim"] if c["ngram_buckets"] else 0)
        dense = features * c["dense"] + c["dense"] * c["classes"]
        total += names * (2 * width * lstm + dense)
    return 2.0 * total


def measure(precision: str, titles: list[str], clients: int, seconds: float) -> dict:
    settings = Settings(intra_op_threads=1, classifier_precision=precision)
    classifier = Classifier(ROOT / "models" / "classifier", settings)
    classifier.warm_up()
    configs = classifier.manifest.model_extra["config"]
    counted = {"flops": 0.0, "names": 0, "padded": 0}
    run = classifier.session.run

    def counting_run(outputs: Any, feeds: dict, *args: Any) -> Any:
        names, width = feeds["ids"].shape
        counted["flops"] += call_flops(configs, names, width)
        counted["names"] += names
        counted["padded"] += names * width
        return run(outputs, feeds, *args)

    classifier.session.run = counting_run  # type: ignore[method-assign]

    async def main() -> int:
        batcher = DynamicBatcher("classifier", classifier.batch, max_batch=64, max_wait_s=0.002, max_queue=1024,
                                 deadline_s=60, limiter=anyio.CapacityLimiter(1))  # fmt: skip
        await batcher.start()
        try:
            return await closed_loop(lambda title: batcher.submit([title]), titles, clients, seconds)
        finally:
            await batcher.stop()

    answered = asyncio.run(main())
    return {"names_per_s": round(answered / seconds, 1), "flop_per_s": round(counted["flops"] / seconds),
            "padded_positions_per_name": round(counted["padded"] / max(counted["names"], 1), 1)}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/dbpedia"))
    parser.add_argument("--cores", default="0")
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the table shows medians")
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {int(c) for c in args.cores.split(",")})
    titles = [title for title, _ in read_titles(args.data / "smaller.test")]
    peak = sgemm_peak(args.cores)
    runs: dict[str, list[dict]] = {"int8": [], "float32": []}
    for _ in range(args.repeats):
        for precision, measured in runs.items():
            measured.append(measure(precision, titles, args.clients, args.seconds))
            print(precision, json.dumps(measured[-1]), flush=True)
    rows = [{"graph": precision, **median_row(measured, "names_per_s")} for precision, measured in runs.items()]
    report = {**run_record("bench.classifier_flops", argv), "clients": args.clients, "seconds": args.seconds,
              "sgemm_peak_flops": peak, "rows": rows}  # fmt: skip
    out = ROOT / "docs" / "classifier_flops.json"
    lines = [
        "# The classifier's model FLOP utilisation, in process",
        "",
        f"Measured {report['measured']} with `{report['command']}`: {args.clients} closed-loop clients, one test "
        f"name each at a time, the dynamic batcher (64 names or 2 ms), the bundled classifier on one core, "
        f"{args.seconds:g} s a round, median round.",
        "",
        "| graph | names/s (median; all rounds) | padded positions a name | model GFLOP/s (float32-equivalent) "
        "| FLOP utilisation |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['graph']} | {r['names_per_s']} ({', '.join(map(str, r['names_per_s_rounds']))}) | "
                     f"{r['padded_positions_per_name']} | {r['flop_per_s'] / 1e9:.1f} | "
                     f"{100 * r['flop_per_s'] / peak:.1f}% |")  # fmt: skip
    lines += [
        "",
        f"FLOP utilisation: the FLOPs of every graph call (from its input shape, counted as float32 arithmetic: "
        f"the int8 graph does the same work in int8) per second ÷ {peak / 1e9:.1f} GFLOP/s, a 2048² SGEMM on the "
        "same core in the same run. Padding counts: it is work the core does.",
    ]
    save_report(out, report, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
