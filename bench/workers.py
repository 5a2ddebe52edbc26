"""Throughput of `charserve serve --workers N` for N HTTP worker processes (one engine process beside them
when N > 1), each server pinned to given cores and the load generator (bench/load.py) to others: requests per
second, and per second of CPU the server's processes used, all of them together.

    python -m bench.workers --layouts 0:1 0,1:0,1 --workers 1 2 --seconds 15 --repeats 3

A layout is SERVER_CORES:CLIENT_CORES. Results go to docs/workers.json and docs/workers.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

from bench.harness import run_record, save_report
from bench.load import BODIES, closed_loop
from bench.serving import ROOT, median_row, start_server, stop_server

TICKS = os.sysconf("SC_CLK_TCK")


def session_cpu_seconds(session: int) -> dict[int, float]:
    """User and system CPU seconds of each live process in `session` (a server started in its own), by pid;
    zombies left out."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == session and fields[0] != "Z":
                found[int(entry.name)] = (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
    return found


def measure(url: str, endpoint: str, concurrency: int, seconds: float, session: int) -> dict:
    cpu, wall, client = session_cpu_seconds(session), time.perf_counter(), os.times()
    result = asyncio.run(closed_loop(url, BODIES[endpoint], concurrency, seconds))
    wall = time.perf_counter() - wall
    used = {pid: (spent - cpu.get(pid, 0.0)) / wall for pid, spent in session_cpu_seconds(session).items()}
    server_cores = sum(used.values())
    after = os.times()
    summary = result.summary()
    return {
        **summary,
        "server_cores_used": round(server_cores, 2),
        "process_cores_used": sorted((round(c, 2) for c in used.values() if c >= 0.005), reverse=True),
        "ok_per_server_cpu_s": round(summary["ok_per_s"] / server_cores, 1) if server_cores else None,
        "client_cores_used": round((after.user + after.system - client.user - client.system) / wall, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layouts", nargs="+", default=["0:1", "0,1:0,1"], help="SERVER_CORES:CLIENT_CORES")
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--endpoints", nargs="+", default=["/classify", "/correct"])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the table shows medians")
    parser.add_argument("--port", type=int, default=18500)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "workers.json")
    args = parser.parse_args(argv)
    runs = []
    for round_ in range(args.repeats):
        for layout in args.layouts:
            server_cores, client_cores = layout.split(":")
            os.sched_setaffinity(0, {int(c) for c in client_cores.split(",")})
            # Every other round in reverse, so that no server always runs just after another.
            for workers in args.workers if round_ % 2 == 0 else args.workers[::-1]:
                command = ["-m", "app.cli", "serve", "--workers", str(workers)]
                server = start_server({}, server_cores, args.port, python_args=command)
                try:
                    for endpoint in args.endpoints:
                        url = f"http://127.0.0.1:{args.port}{endpoint}"
                        row = {"round": round_, "server_cores": server_cores, "client_cores": client_cores,
                               "workers": workers, "endpoint": endpoint, "concurrency": args.concurrency,
                               **measure(url, endpoint, args.concurrency, args.seconds, server.pid)}  # fmt: skip
                        print(json.dumps(row), flush=True)
                        runs.append(row)
                finally:
                    stop_server(server)
    keys = dict.fromkeys((r["server_cores"], r["client_cores"], r["workers"], r["endpoint"]) for r in runs)
    rows = [
        median_row([r for r in runs if (r["server_cores"], r["client_cores"], r["workers"], r["endpoint"]) == k])
        for k in keys
    ]
    report = {**run_record("bench.workers", argv), "repeats": args.repeats, "rows": rows, "runs": runs}
    save_report(args.out, report, markdown(report))


NOTES = """
1 HTTP worker is one process doing everything (`charserve serve`); N > 1 is N HTTP worker processes and one
engine process (`charserve serve --workers N`). Server: `CHARSERVE_INFERENCE_WORKERS=1`,
`CHARSERVE_INTRA_OP_THREADS` = its cores, access log off. Server cores used: CPU seconds of all the server's
processes per second of the run (warm-up included), from /proc; in brackets each process's share, the busiest
first (with N > 1 the engine's is the largest).
"""


def markdown(report: dict) -> str:
    head = (
        f"# Serving across processes: throughput by HTTP workers\n\n*Generated by `bench/workers.py`.*\n\n"
        f"Measured {report['measured']} with `{report['command']}`: closed loop, single-text requests, "
        f"{report['repeats']} interleaved rounds, each row the round with the median throughput.\n\n"
        "| server cores | client cores | HTTP workers | endpoint | ok req/s (median; all rounds) | p50 ms | p99 ms "
        "| server cores used (by process) | req per server CPU-second | client cores used |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = "".join(
        f"| {r['server_cores']} | {r['client_cores']} | {r['workers']} | {r['endpoint']} | {r['ok_per_s']} "
        f"({', '.join(str(x) for x in r['ok_per_s_rounds'])}) | {r['p50_ms']} | {r['p99_ms']} | "
        f"{r['server_cores_used']} ({', '.join(map(str, r['process_cores_used']))}) | {r['ok_per_server_cpu_s']} "
        f"| {r['client_cores_used']} |\n"
        for r in report["rows"]
    )
    return head + rows + NOTES


if __name__ == "__main__":
    main()
