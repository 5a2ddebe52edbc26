"""How long Python's garbage collections pause the server under load, and how often they run: as served
(start-up objects frozen out of them, the youngest generation collected at 10,000 objects instead of 700:
app/main.py), with Python's default threshold, and with neither.

    python -m bench.gc_pauses --server-cores 0 --client-cores 1 --seconds 10 --repeats 2

Each round starts the server three ways (`gc.freeze` or `gc.set_threshold` made a no-op in the server process
for the others), times every collection there with `gc.callbacks` while a closed loop of 64 clients and then
an open loop at half of that loop's throughput run on `/correct`, and reports the pauses beside the open
loop's latency.
Writes docs/gc_pauses.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import sys
import time
from pathlib import Path

from bench.harness import run_record, save_report
from bench.load import BODIES, closed_loop, open_loop
from bench.serving import ROOT, start_server, stop_server

VARIANTS = {
    "as served: start-up objects frozen, young collections at 10,000": [],
    "frozen, Python's default threshold (700)": ["--default-threshold"],
    "not frozen, default threshold": ["--no-freeze", "--default-threshold"],
}


def serve(port: int, stats: Path, freeze: bool, threshold: bool) -> None:
    """The server, timing its collections: SIGUSR1 starts a fresh record, SIGUSR2 writes it to `stats`."""
    import uvicorn

    if not freeze:
        gc.freeze = lambda: None  # app/main.py calls it after loading
    if not threshold:
        gc.set_threshold = lambda *_: None  # and raises the young generation's threshold
    pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
    started = [0.0]
    recording = [False]

    def timed(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        elif recording[0]:
            pauses[info["generation"]].append(round((time.perf_counter() - started[0]) * 1000, 2))

    def begin(*_: object) -> None:
        for found in pauses.values():
            found.clear()
        recording[0] = True

    gc.callbacks.append(timed)
    signal.signal(signal.SIGUSR1, begin)
    signal.signal(signal.SIGUSR2, lambda *_: stats.write_text(json.dumps(pauses)))
    uvicorn.run("app.main:app", port=port, log_level="warning", access_log=False)


def summary(pauses: list[float]) -> dict:
    ordered = sorted(pauses)
    return {
        "collections": len(ordered),
        "median_ms": ordered[len(ordered) // 2] if ordered else None,
        "max_ms": ordered[-1] if ordered else None,
        "total_ms": round(sum(ordered), 1),
    }


def measure(variant: str, args: argparse.Namespace) -> dict:
    stats = Path(f"/tmp/bench-gc-{args.port}.json")
    stats.unlink(missing_ok=True)
    python_args = ["-m", "bench.gc_pauses", "--serve", "--stats", str(stats), *VARIANTS[variant]]
    server = start_server({}, args.server_cores, args.port, python_args=python_args)
    url, bodies = f"http://127.0.0.1:{args.port}/correct", BODIES["/correct"]
    try:
        os.kill(server.pid, signal.SIGUSR1)
        closed = asyncio.run(closed_loop(url, bodies, 64, args.seconds)).summary()
        opened = asyncio.run(open_loop(url, bodies, closed["ok_per_s"] / 2, args.seconds)).summary()
        os.kill(server.pid, signal.SIGUSR2)
        for _ in range(50):
            if stats.exists():
                break
            time.sleep(0.1)
        pauses = {int(g): p for g, p in json.loads(stats.read_text()).items()}
    finally:
        stop_server(server)
    return {
        "closed_loop_ok_per_s": closed["ok_per_s"],
        "open_loop": {k: opened[k] for k in ("ok_per_s", "p50_ms", "p95_ms", "p99_ms")},
        "full_collections": {**summary(pauses[2]), "each_ms": pauses[2]},
        "younger_collections": summary(pauses[0] + pauses[1]),
    }


def markdown(report: dict) -> str:
    lines = [
        "# Garbage-collection pauses under load",
        "",
        f"Measured {report['measured']} with `{report['command']}`: server on core(s) {report['server_cores']},",
        f"load on {report['client_cores']}; per round a {report['seconds']:g} s closed loop of 64 clients on",
        "`/correct`, then an open loop at half its throughput; collections timed in the server throughout both.",
        "",
        "| round | server | closed loop req/s | full collections | their median / max ms | younger ones | "
        "their max / total ms | open loop p50 / p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, round_ in enumerate(report["rounds"], 1):
        for variant, r in round_.items():
            full, young, o = r["full_collections"], r["younger_collections"], r["open_loop"]
            lines.append(
                f"| {i} | {variant} | {r['closed_loop_ok_per_s']} | {full['collections']} | {full['median_ms']} / "
                f"{full['max_ms']} | {young['collections']} | {young['max_ms']} / {young['total_ms']} | "
                f"{o['p50_ms']} / {o['p99_ms']} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server-cores", default="0")
    parser.add_argument("--client-cores", default="1")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--port", type=int, default=18700)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "gc_pauses.json")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the server side of a round
    parser.add_argument("--stats", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--no-freeze", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--default-threshold", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args.port, args.stats, freeze=not args.no_freeze, threshold=not args.default_threshold)
    os.sched_setaffinity(0, {int(c) for c in args.client_cores.split(",")})
    report = {
        **run_record("bench.gc_pauses", argv),
        "server_cores": args.server_cores,
        "client_cores": args.client_cores,
        "seconds": args.seconds,
        "rounds": [{variant: measure(variant, args) for variant in VARIANTS} for _ in range(args.repeats)],
    }
    save_report(args.out, report, markdown(report))


if __name__ == "__main__":
    sys.exit(main())
