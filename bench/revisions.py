"""Throughput of this service at several git revisions, side by side in one run: did a change slow it down?

    python -m bench.revisions b7c8435 HEAD --server-cores 0 --client-cores 1 --rounds 6

Each revision is checked out in a temporary git worktree and served from there, with its own bundled models, as
`uvicorn app.main:app`. All servers run at once, pinned to the same cores and idle unless loaded; the load
generator (bench/load.py, a closed loop) alternates short windows between them, round after round, so that a
slow spell of a shared machine hits every revision alike. Per revision and endpoint the report gives the median
throughput, the median of each round's ratio to the first revision, and where each request's CPU time goes: the
event loop's thread (HTTP, validation, routing, the schedulers) and the other threads (the model calls).
Results go to docs/revisions.json and docs/revisions.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench.harness import pinned_parser, run_record, save_report
from bench.load import BODIES, closed_loop
from bench.serving import ROOT, start_server, stop_server

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


@contextmanager
def worktree(revision: str, parent: Path):
    """`revision` checked out, detached, in a folder under `parent`; removed after."""
    folder = parent / revision.replace("/", "_")
    git("worktree", "add", "--detach", "--force", "-q", str(folder), revision)
    try:
        yield folder
    finally:
        git("worktree", "remove", "--force", str(folder))


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU time (user and system) of the process's main thread, where uvicorn runs the event loop, and of all
    its threads together."""

    def ticks(stat: Path) -> int:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of proc(5)

    return ticks(Path(f"/proc/{pid}/task/{pid}/stat")) / TICKS_PER_S, ticks(Path(f"/proc/{pid}/stat")) / TICKS_PER_S


def window(url: str, pid: int, endpoint: str, concurrency: int, seconds: float) -> dict:
    """One closed-loop window against one server, with the server's CPU time per answered request."""
    loop_before, all_before = cpu_seconds(pid)
    summary = asyncio.run(closed_loop(url + endpoint, BODIES[endpoint], concurrency, seconds, warmup_s=0.5)).summary()
    loop_after, all_after = cpu_seconds(pid)
    answered = max(summary["ok"], 1)
    return {
        **summary,
        "loop_ms_per_request": round((loop_after - loop_before) * 1000 / answered, 3),
        "other_threads_ms_per_request": round(
            ((all_after - all_before) - (loop_after - loop_before)) * 1000 / answered, 3
        ),
    }


def summarise(runs: list[dict], revisions: list[str]) -> list[dict]:
    """Per endpoint and revision: medians over the rounds, and the median of each round's ratio to the first."""
    rows = []
    for endpoint in dict.fromkeys(r["endpoint"] for r in runs):
        first = {r["round"]: r["ok_per_s"] for r in runs if r["endpoint"] == endpoint and r["revision"] == revisions[0]}
        for revision in revisions:
            mine = [r for r in runs if r["endpoint"] == endpoint and r["revision"] == revision]
            ratios = [r["ok_per_s"] / first[r["round"]] for r in mine if first.get(r["round"])]
            rows.append(
                {
                    "endpoint": endpoint,
                    "revision": revision,
                    "ok_per_s": statistics.median(r["ok_per_s"] for r in mine),
                    "ratio_to_first": round(statistics.median(ratios), 3),
                    "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
                    "loop_ms_per_request": statistics.median(r["loop_ms_per_request"] for r in mine),
                    "other_threads_ms_per_request": statistics.median(r["other_threads_ms_per_request"] for r in mine),
                }
            )
    return rows


def markdown(report: dict) -> str:
    first = report["revisions"][0]
    lines = [
        "# Throughput across revisions",
        "",
        f"Measured {report['measured']} by `{report['command']}`: every server pinned to core(s) "
        f"{report['server_cores']}, the load generator to {report['client_cores']}, closed loops of "
        f"{report['concurrency']} clients, {report['seconds']:g}-s windows alternating between the revisions, "
        f"{report['rounds']} rounds. Commits: "
        + ", ".join(f"`{rev}` = {sha[:10]}" for rev, sha in report["commits"].items())
        + ".",
        "",
        f"| endpoint | revision | req/s (median) | ratio to `{first}` (median of rounds; range) "
        "| event loop ms/request | other threads ms/request |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        low, high = row["ratio_range"]
        lines.append(
            f"| `{row['endpoint']}` | `{row['revision']}` | {row['ok_per_s']:.1f} | {row['ratio_to_first']:.3f} "
            f"({low:.3f}-{high:.3f}) | {row['loop_ms_per_request']:.3f} | {row['other_threads_ms_per_request']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = pinned_parser(__doc__, port=18500)
    parser.add_argument("revisions", nargs="+", help="git revisions; the first is the one the others are compared to")
    parser.add_argument("--endpoints", nargs="+", default=["/correct", "/classify"])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=4, help="length of one window")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "revisions.json")
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {int(c) for c in args.client_cores.split(",")})
    commits = {rev: git("rev-parse", rev) for rev in args.revisions}
    runs: list[dict] = []
    with ExitStack() as stack:
        parent = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="charserve-revisions-")))
        servers = {}
        for offset, revision in enumerate(args.revisions):
            tree = stack.enter_context(worktree(revision, parent))
            port = args.port + offset
            env = {"CHARSERVE_MODELS_DIR": str(tree / "models")}
            process = start_server(env, args.server_cores, port, cwd=tree)
            stack.callback(stop_server, process)
            servers[revision] = (f"http://127.0.0.1:{port}", process.pid)
        for round_ in range(args.rounds):
            for endpoint in args.endpoints:
                # Every other round in reverse, so that no revision always runs just after another.
                for revision in args.revisions if round_ % 2 == 0 else args.revisions[::-1]:
                    url, pid = servers[revision]
                    row = {"round": round_, "revision": revision, "endpoint": endpoint,
                           **window(url, pid, endpoint, args.concurrency, args.seconds)}  # fmt: skip
                    print(json.dumps(row), flush=True)
                    runs.append(row)
    report = {
        **run_record("bench.revisions", argv),
        "revisions": args.revisions,
        "commits": commits,
        "server_cores": args.server_cores,
        "client_cores": args.client_cores,
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "rows": summarise(runs, args.revisions),
        "runs": runs,
    }
    save_report(args.out, report, markdown(report))


if __name__ == "__main__":
    main()
