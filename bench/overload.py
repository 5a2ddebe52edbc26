"""Overload: an open loop well past capacity, against the server with no bound on requests in progress, with
uvicorn's `--limit-concurrency` (plain-text 503) and with ours (app/api/middleware.py: JSON 503, the default).

    python -m bench.overload --rate 600 --seconds 8

The server runs on --server-cores, the load generator on --client-cores. What matters: how fast the
refusals come, and how long the admitted requests wait. Writes docs/overload.json and docs/overload.md.
"""

from __future__ import annotations

import asyncio
import json
import os

from bench.harness import pinned_parser, run_record, save_report
from bench.load import BODIES, open_loop
from bench.serving import ROOT, start_server, stop_server

# name → (uvicorn arguments, environment)
CONFIGS: dict[str, tuple[list[str], dict[str, str]]] = {
    "no concurrency limit": ([], {"CHARSERVE_MAX_CONCURRENT_REQUESTS": "0"}),
    "uvicorn --limit-concurrency 96 (plain-text 503)": (
        ["--limit-concurrency", "96"], {"CHARSERVE_MAX_CONCURRENT_REQUESTS": "0"}),
    "CHARSERVE_MAX_CONCURRENT_REQUESTS=96 (JSON 503; the default)": ([], {}),
}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = pinned_parser(__doc__, port=18450)
    parser.add_argument("--endpoint", default="/correct")
    parser.add_argument("--rate", type=float, default=600)
    parser.add_argument("--seconds", type=float, default=8)
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {int(c) for c in args.client_cores.split(",")})
    rows = []
    for name, (extra, env) in CONFIGS.items():
        server = start_server(env, args.server_cores, args.port, extra)
        try:
            url = f"http://127.0.0.1:{args.port}{args.endpoint}"
            result = asyncio.run(open_loop(url, BODIES[args.endpoint], args.rate, args.seconds))
            rows.append({"server": name, **result.summary()})
            print(json.dumps(rows[-1]), flush=True)
        finally:
            stop_server(server)
    report = {
        **run_record("bench.overload", argv),
        "endpoint": args.endpoint,
        "rate": args.rate,
        "rows": rows,
    }
    out = ROOT / "docs" / "overload.json"
    lines = [
        "# Overload",
        "",
        f"Measured {report['measured']} with `{report['command']}`: an open loop of {args.rate:g} single-text "
        f"requests/s to `{args.endpoint}` for {args.seconds:g} s, server on core(s) {args.server_cores}, load "
        f"generator on core(s) {args.client_cores}. Latencies are of the answered (200) requests.",
        "",
        "| server | 200 | 503 | other | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        other = sum(v for k, v in r["statuses"].items() if k not in ("200", "503"))
        lines.append(
            f"| {r['server']} | {r['statuses'].get('200', 0)} | {r['statuses'].get('503', 0)} | {other} | "
            f"{r['p50_ms']} | {r['p99_ms']} |"
        )
    save_report(out, report, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
