"""Throughput and latency of servers side by side, in one run: each server pinned to its own cores, the load
generator (bench/load.py) to the others.

    python -m bench.serving --server-cores 0 --client-cores 1 --seconds 15

Servers: (a) this service with batching off (every request its own model call), (b) this service,
(c) LitServe serving the same models with the same inference code (bench/litserve_server.py, its own
batching) and (d) a naive PyTorch-eager server taking one request at a time (bench/naive_server.py, on the
bundled models' weights).
After its closed loop, (b) also gets an open loop at half of its peak, for the latency there.
Results go to docs/benchmarks.json and docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.harness import pinned_parser, run_record
from bench.load import BODIES, closed_loop, open_loop
from bench.serving_plots import throughput_and_latency

ROOT = Path(__file__).resolve().parent.parent

# As shipped (no uvicorn access log beside the app's), and as the peers run.
UVICORN = ["-m", "uvicorn", "app.main:app", "--log-level", "warning", "--no-access-log"]
LITSERVE = ["-m", "bench.litserve_server", "--max-batch-size", "64", "--batch-timeout", "0.002"]
NAIVE = ["-m", "bench.naive_server"]
# Servers that differ from (b) only for some endpoints run only those.
ONLY = {"charserve, speller batching continuously": ["/correct"],
        "charserve, greedy decoding as (d) does": ["/correct"],
        "LitServe, speller in its ContinuousBatchingLoop": ["/correct"]}  # fmt: skip
# name → (python arguments, environment); the port is appended.
SERVERS: dict[str, tuple[list[str], dict[str, str]]] = {
    "charserve, batching off": (UVICORN, {"CHARSERVE_BATCH_MAX_TEXTS": "1", "CHARSERVE_BATCH_MAX_WAIT_MS": "0"}),
    "charserve": (UVICORN, {}),
    "charserve, speller batching continuously": (UVICORN, {"CHARSERVE_SPELLER_SCHEDULING": "continuous"}),
    # The naive server decodes greedily; this row does the same work per word (beam 1, plus the greedy
    # out-of-dictionary pass), so that its ratio to (d) measures the serving stack, not the decoding choice.
    "charserve, greedy decoding as (d) does": (UVICORN, {"CHARSERVE_SPELLER_BEAM_SIZE": "1"}),
    "LitServe (max_batch_size 64, batch_timeout 2 ms)": (LITSERVE, {}),
    "LitServe, speller in its ContinuousBatchingLoop": ([*LITSERVE, "--speller-loop", "continuous"], {}),
    "naive: PyTorch eager, one request at a time": (NAIVE, {}),
}
# The README's names for them, for --servers.
LABELS = dict(zip(["a", "b", "b'", "b''", "c", "c'", "d"], SERVERS, strict=True))


def port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def start_server(
    env: dict[str, str],
    cores: str,
    port: int,
    extra: list[str] | None = None,
    python_args: list[str] = UVICORN,
    cwd: Path = ROOT,
) -> subprocess.Popen:
    """Start one server (from the tree at `cwd`) in a session of its own, so that stop_server reaches its worker
    processes too, and wait until it is ready. A port already taken is an error: /ready would be answered by
    whatever holds it."""
    for _ in range(150):  # the previous server's processes may take a moment to release it
        if not port_in_use(port):
            break
        time.sleep(0.1)
    else:
        raise RuntimeError(f"port {port} is already in use: stop what holds it first")
    command = ["taskset", "-c", cores, sys.executable, *python_args, "--port", str(port), *(extra or [])]
    # ONNX Runtime sizes its pool by the machine's cores, not the pinned ones: tell it.
    threads = str(len(cores.split(",")))
    settings = {**os.environ, "CHARSERVE_ACCESS_LOG": "false", "CHARSERVE_INFERENCE_WORKERS": "1",
                "CHARSERVE_INTRA_OP_THREADS": threads, **env}  # fmt: skip
    log = open(f"/tmp/bench-serving-{port}.log", "w")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(
        command, cwd=cwd, env=settings, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    stop_server(process)
    raise RuntimeError(f"server with {env} not ready; see {log.name}")


def stop_server(process: subprocess.Popen) -> None:
    """SIGTERM to the server's whole session (LitServe runs workers in child processes), SIGKILL if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def main(argv: list[str] | None = None) -> None:
    parser = pinned_parser(__doc__, port=18400)
    parser.add_argument("--endpoints", nargs="+", default=["/correct", "/classify"])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--repeats", type=int, default=3, help="rounds over all servers; the table shows medians")
    parser.add_argument(
        "--servers", nargs="+", choices=list(LABELS), default=list(LABELS),
        help="which servers, by the README's letters: (a) batching off, (b) charserve, (c) LitServe, (d) naive",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.json")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report and plots from --out's JSON")
    args = parser.parse_args(argv)
    if args.report_only:
        return write_report(json.loads(args.out.read_text()), args.out)
    os.sched_setaffinity(0, {int(c) for c in args.client_cores.split(",")})
    runs, providers = [], {}
    # Rounds interleave the servers, so a slow spell of this shared machine hits all of them alike; every other
    # round runs them in reverse, so that no server always runs just after another.
    chosen = [LABELS[label] for label in LABELS if label in args.servers]
    for round_ in range(args.repeats):
        for name in chosen if round_ % 2 == 0 else chosen[::-1]:
            python_args, env = SERVERS[name]
            extra = ["--threads", str(len(args.server_cores.split(",")))] if python_args is NAIVE else None
            server = start_server(env, args.server_cores, args.port, extra=extra, python_args=python_args)
            try:
                if name == "charserve" and not providers:  # CPU or CUDA: what the table was measured on
                    ready = httpx.get(f"http://127.0.0.1:{args.port}/ready", timeout=5).json()
                    providers = {m["name"]: m["provider"] for m in ready["models"]}
                for endpoint in [e for e in args.endpoints if e in ONLY.get(name, [e])]:
                    url = f"http://127.0.0.1:{args.port}{endpoint}"
                    result = asyncio.run(closed_loop(url, BODIES[endpoint], args.concurrency, args.seconds))
                    row = {"round": round_, "server": name, "endpoint": endpoint, "concurrency": args.concurrency,
                           **result.summary()}  # fmt: skip
                    print(json.dumps(row), flush=True)
                    runs.append(row)
                    if name == "charserve" and result.summary()["ok_per_s"]:
                        rate = result.summary()["ok_per_s"] / 2
                        half = asyncio.run(open_loop(url, BODIES[endpoint], rate, args.seconds))
                        row = {"round": round_, "server": "charserve, open loop at half its peak",
                               "endpoint": endpoint, "concurrency": f"{rate:.0f} req/s", **half.summary()}  # fmt: skip
                        print(json.dumps(row), flush=True)
                        runs.append(row)
            finally:
                stop_server(server)
    rows = [median_row([r for r in runs if (r["server"], r["endpoint"]) == key]) for key in dict.fromkeys(
        (r["server"], r["endpoint"]) for r in runs)]  # fmt: skip
    report = {
        **run_record("bench.serving", argv),
        "server_cores": args.server_cores,
        "client_cores": args.client_cores,
        "repeats": args.repeats,
        "providers": providers,
        "rows": rows,
        "runs": runs,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    write_report(report, args.out)


def write_report(report: dict, out: Path) -> None:
    """docs/benchmarks.md and its plot beside the JSON."""
    throughput_and_latency(report, out.with_suffix(".png"))
    out.with_suffix(".md").write_text(markdown(report, out.with_suffix(".png").name))
    print(markdown(report, out.with_suffix(".png").name))


def median_row(rounds: list[dict], key: str = "ok_per_s") -> dict:
    """The round with the median throughput (`key`), plus every round's throughput to show the spread."""
    ordered = sorted(rounds, key=lambda r: r[key])
    middle = dict(ordered[len(ordered) // 2])
    middle[f"{key}_rounds"] = [r[key] for r in rounds]
    return middle


def round_ratios(runs: list[dict]) -> list[tuple[str, str, list[float]]]:
    """For each peer and endpoint, charserve's throughput over the peer's in each round both ran."""
    ours = {(r["round"], r["endpoint"]): r["ok_per_s"] for r in runs if r["server"] == "charserve"}
    peers: dict[tuple[str, str], list[float]] = {}
    for r in runs:
        mine = ours.get((r["round"], r["endpoint"]))
        if r["server"] not in ("charserve", "charserve, open loop at half its peak") and mine and r["ok_per_s"]:
            peers.setdefault((r["server"], r["endpoint"]), []).append(mine / r["ok_per_s"])
    return [(server, endpoint, ratios) for (server, endpoint), ratios in peers.items()]


def markdown(report: dict, plot: str = "benchmarks.png") -> str:
    ran_on = ", ".join(sorted(set(report.get("providers", {}).values())))
    lines = [
        "# Serving benchmarks",
        "",
        "*Generated by `bench/serving.py`; the servers run one after another in the same invocation.*",
        "",
        f"Measured {report['measured']} with `{report['command']}`: server on core(s) {report['server_cores']}, "
        f"load generator on core(s) {report['client_cores']}, closed loop, single-text requests; "
        f"{report.get('repeats', 1)} interleaved rounds, each row the round with the median throughput.",
        "",
        *([f"Machine: {report['machine']}.", ""] if report.get("machine") else []),
        *([f"charserve's models ran on {ran_on}.", ""] if ran_on else []),
        "| server | endpoint | clients | ok req/s (median; all rounds) | p50 ms | p95 ms | p99 ms | charserve ÷ this |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ours = {r["endpoint"]: r["ok_per_s"] for r in report["rows"] if r["server"] == "charserve"}
    for r in report["rows"]:
        ratio = ours[r["endpoint"]] / r["ok_per_s"] if ours.get(r["endpoint"]) and r["ok_per_s"] else float("nan")
        shown = "—" if "open loop" in r["server"] else f"{ratio:.2f}x"  # a latency row, not a peer
        lines.append(
            f"| {r['server']} | {r['endpoint']} | {r['concurrency']} | {r['ok_per_s']} "
            f"({', '.join(str(x) for x in r.get('ok_per_s_rounds', [r['ok_per_s']]))}) | {r['p50_ms']} | "
            f"{r['p95_ms']} | {r['p99_ms']} | {shown} |"
        )
    lines += ["", "charserve ÷ each server within each round, where the drift of this machine's speed over minutes",
              "weighs least:", ""]  # fmt: skip
    for server, endpoint, ratios in round_ratios(report["runs"]):
        lines.append(f"- {server}, `{endpoint}`: " + ", ".join(f"{x:.2f}x" for x in ratios))
    lines += [
        "",
        "`/correct` bodies are single distinct misspellings (2,000 one-edit typos of frequent English words,",
        "`bench/load.py`), so that the speller's deduplication of a batch's words does not flatter batching.",
        "Server: `CHARSERVE_INFERENCE_WORKERS=1`, `CHARSERVE_INTRA_OP_THREADS` = its cores,",
        "batching off = `CHARSERVE_BATCH_MAX_TEXTS=1`. charserve gathers the texts of concurrent requests into",
        "one call (up to 64 texts or 2 ms); the continuous row has each word join the running beam search",
        "instead (`CHARSERVE_SPELLER_SCHEDULING=continuous`). LitServe's continuous row runs the same step",
        "model under LitServe's ContinuousBatchingLoop (`--speller-loop continuous`). LitServe runs the",
        "same `app/` inference modules on the same ONNX files, one worker, its own batching",
        "(bench/litserve_server.py). The naive server runs the bundled models' weights (read back from their",
        "float32 graphs) in PyTorch eager, one request at a time, greedy decoding (bench/naive_server.py); the",
        "greedy charserve row decodes as it does (`CHARSERVE_SPELLER_BEAM_SIZE=1`: one dictionary-constrained",
        "greedy row and the unconstrained greedy row per word, against the naive server's one), for a",
        "like-for-like ratio to (d), not for its answers (beam 16 is what charserve serves, see",
        "docs/speller.md). The open-loop row sends at half of",
        "(b)'s closed-loop throughput of the same round, at a fixed rate, for the latency at that load,",
        "counted from when the schedule said each request goes. The load generator freezes its own start-up",
        "objects out of garbage collection while it measures (a full collection of them would pause it mid-run).",
        "",
        f"![throughput and latency of each server]({plot})",
        "",
        "Latency against load, charserve and LitServe on `/correct`: [latency_curve.md](latency_curve.md)",
        "(`python -m bench.latency_curve`).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
