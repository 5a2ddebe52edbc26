"""The speller's schedulers side by side, in process (no HTTP): dynamic batching of whole requests against
continuous batching of words, joining at every step or once enough words wait.

    python -m bench.speller_scheduling --cores 0 --seconds 8 --repeats 3

64 closed-loop clients each send one distinct misspelling at a time (bench/load.py's pool) straight to the
scheduler, which runs the bundled speller on one pinned core. Besides words/s it reports where the model
thread's time went (encoder calls, beam and greedy steps, batch copies on join), from timers wrapped
around those calls, and the model FLOP utilisation: the FLOPs of every graph call (counted from its input
shapes, as float32 arithmetic even where the graphs run int8) per second, against a 2048² SGEMM on the same
core in the same run. Writes docs/speller_scheduling.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import onnx

from app.adapters.speller.model import Speller
from app.adapters.speller.rows import SpellRows
from app.engine.continuous import ContinuousBatcher
from app.engine.dynamic import DynamicBatcher
from app.settings import Settings
from bench.harness import run_record, save_report
from bench.load import BODIES
from bench.poem_batching import sgemm_peak
from bench.serving import median_row

ROOT = Path(__file__).resolve().parent.parent
# name → (scheduler, join fraction)
CONFIGS = {"dynamic (64 texts or 2 ms)": ("dynamic", 0.0), "continuous, join at every step": ("continuous", 0.0),
           "continuous, join once half as many wait (default of the setting)": ("continuous", 0.5)}  # fmt: skip


class Timers:
    """Wall time inside some methods of the speller, by name."""

    def __init__(self) -> None:
        self.seconds: collections.Counter[str] = collections.Counter()

    def wrap(self, owner: Any, name: str, label: str) -> None:
        inner = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - started

        setattr(owner, name, timed)


class FlopCounter:
    """FLOPs of the speller's graph calls, from their input shapes: multiply-adds × 2 of every LSTM gate,
    attention product and linear layer (training/speller_model.py). With `input_table` the decoder step gathers
    its LSTM's input half from a table instead of multiplying (the int8 step since speller 1.5.0,
    training/export.py's SpellerDecoderStepTable), so only the recurrent half counts."""

    def __init__(self, config: dict, input_table: bool = False) -> None:
        emb, hidden, vocab = config["emb"], config["hidden"], config["vocab_size"]
        self.lstm = 4 * hidden * (emb + hidden)  # one LSTM step of one row
        self.encoder_tail = 2 * hidden * 2 * hidden  # the bridge to the decoder's first state, once per word
        # per source position: its attention key and its value (combine's context half, training/export.py), each
        # a 2H → H projection of the encoder state
        self.keys_and_values = 2 * (2 * hidden * hidden)
        cell = 4 * hidden * hidden if input_table else self.lstm
        self.decoder_row = cell + hidden * hidden + hidden * vocab  # LSTM, combine's state half, output
        self.attention = 2 * hidden  # scores and context, per source position of a row
        self.flops = 0.0

    def wrap(self, speller: Speller) -> None:
        encode, decode = speller.encoder.run, speller.decoder.run

        def encoder_run(names: Any, feeds: dict, *args: Any) -> Any:
            words, length = feeds["src"].shape
            self.flops += 2 * words * (length * (2 * self.lstm + self.keys_and_values) + self.encoder_tail)
            return encode(names, feeds, *args)

        def decoder_run(names: Any, feeds: dict, *args: Any) -> Any:
            rows, length = len(feeds["token"]), feeds["values"].shape[1]
            self.flops += 2 * rows * (self.decoder_row + length * self.attention)
            return decode(names, feeds, *args)

        speller.encoder.run, speller.decoder.run = encoder_run, decoder_run  # type: ignore[method-assign]


def has_lstm_op(speller: Speller) -> bool:
    """Whether the decoder step the speller runs is the LSTM op's (or, since 1.5.0's int8 graph, a table's)."""
    graph = "decoder_step_int8" if speller.precision == "int8" else "decoder_step"
    path = ROOT / "models" / "speller" / speller.manifest.graphs[graph].file
    return any(node.op_type.endswith("LSTM") for node in onnx.load(str(path)).graph.node)


async def closed_loop(submit: Callable[[str], Any], words: list[str], clients: int, seconds: float) -> int:
    answered = 0
    end = time.perf_counter() + seconds

    async def client(seed: int) -> None:
        nonlocal answered
        rng = random.Random(seed)
        while time.perf_counter() < end:
            await submit(words[rng.randrange(len(words))])
            answered += 1

    await asyncio.gather(*(client(i) for i in range(clients)))
    return answered


def measure(kind: str, join_fraction: float, words: list[str], clients: int, seconds: float) -> dict:
    speller = Speller(ROOT / "models" / "speller", Settings(intra_op_threads=1))
    speller.warm_up()
    flops = FlopCounter(speller.manifest.model_extra["config"], input_table=not has_lstm_op(speller))
    flops.wrap(speller)
    timers = Timers()
    timers.wrap(speller, "rows", "encoder (words joining)")
    timers.wrap(speller, "_beam_step", "beam steps")
    timers.wrap(speller, "_open_step", "greedy steps")
    concat = SpellRows.concat
    timers.wrap(SpellRows, "concat", "batch copies on join")
    try:

        async def run() -> int:
            workers = anyio.CapacityLimiter(1)
            if kind == "dynamic":
                batcher: Any = DynamicBatcher("speller", speller.batch, max_batch=64, max_wait_s=0.002,
                                              max_queue=1024, deadline_s=60, limiter=workers)  # fmt: skip

                async def submit(word: str) -> Any:
                    return await batcher.submit([word])
            else:
                batcher = ContinuousBatcher(speller, max_batch=128, max_queue=1024, deadline_s=60, limiter=workers,
                                            join_fraction=join_fraction)  # fmt: skip

                async def submit(word: str) -> Any:
                    return await batcher.submit_many(speller.unknown_words([word])[1])

            await batcher.start()
            try:
                return await closed_loop(submit, words, clients, seconds)
            finally:
                await batcher.stop()

        answered = asyncio.run(run())
    finally:
        SpellRows.concat = staticmethod(concat)  # type: ignore[method-assign]
    return {"words_per_s": round(answered / seconds, 1), "flop_per_s": round(flops.flops / seconds),
            "model_seconds": {k: round(v, 2) for k, v in timers.seconds.items()}}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", default="0")
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the table shows medians")
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {int(c) for c in args.cores.split(",")})
    words = [body["text"] for body in BODIES["/correct"]]
    peak = sgemm_peak(args.cores)
    runs: dict[str, list[dict]] = {name: [] for name in CONFIGS}
    for _ in range(args.repeats):
        for name, (kind, fraction) in CONFIGS.items():
            runs[name].append(measure(kind, fraction, words, args.clients, args.seconds))
            print(name, json.dumps(runs[name][-1]), flush=True)
    rows = [{"scheduler": name, **median_row(measured, "words_per_s")} for name, measured in runs.items()]
    report = {
        **run_record("bench.speller_scheduling", argv),
        "clients": args.clients,
        "seconds": args.seconds,
        "sgemm_peak_flops": peak,
        "rows": rows,
    }
    out = ROOT / "docs" / "speller_scheduling.json"
    lines = [
        "# The speller's schedulers, in process",
        "",
        f"Measured {report['measured']} with `{report['command']}`: {args.clients} closed-loop clients, one distinct "
        f"misspelling each at a time, the bundled speller on one core, {args.seconds:g} s a round, median round.",
        "",
        "| scheduler | words/s (median; all rounds) | model GFLOP/s (float32-equivalent) | FLOP utilisation "
        "| model thread: seconds by part |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        parts = ", ".join(f"{k} {v}" for k, v in r["model_seconds"].items())
        lines.append(f"| {r['scheduler']} | {r['words_per_s']} ({', '.join(map(str, r['words_per_s_rounds']))}) "
                     f"| {r['flop_per_s'] / 1e9:.1f} | {100 * r['flop_per_s'] / peak:.1f}% | {parts} |")  # fmt: skip
    lines += [
        "",
        f"FLOP utilisation: the FLOPs of every encoder and decoder call (from their input shapes, counted as "
        f"float32 arithmetic: the CPU runs the int8 graphs) per second ÷ {peak / 1e9:.1f} GFLOP/s, a 2048² SGEMM "
        "on the same core in the same run. Padding and dead rows count: they are work the core does.",
    ]
    save_report(out, report, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
