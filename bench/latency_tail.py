"""Where the open loop's slow requests come from: charserve's latency at half its peak on `/correct`, window by
window, beside what the speller did in each window and how fast this machine ran fixed work on its own.

    python -m bench.latency_tail --server-cores 0 --client-cores 1 --seconds 12 --repeats 3

Each round:
1. a probe: one fixed batch of six misspellings corrected over and over by the speller in a process of its
   own on the server's cores, nothing else running there; its CPU milliseconds per batch, second by second,
   are the machine's own speed (the same work every time);
2. charserve on those cores: its closed-loop peak at concurrency 64, then an open loop at half of that peak
   (as bench.serving runs it) while `/metrics` is read every `--window` seconds. Per window: the p99 of the
   requests sent in it, and from the metrics the speller's share of the window in model calls, words per
   call and microseconds of model call per decoded row (a beam row for one step); from /proc, the server
   process's CPU time and the time the hypervisor stole from the server's cores (steal), each as a share of
   the window: a server short of CPU it was given (steal) is told apart from one with too much to do.

Writes docs/latency_tail.{json,md,png}.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from bench.harness import run_record
from bench.load import BODIES, closed_loop, misspellings, open_loop
from bench.serving import ROOT, start_server, stop_server

SLOW_MS = 100.0  # the bar for p99 at half of peak load
STALL_S = 0.05  # an event-loop wake-up later than this is a stall (a bucket of charserve_event_loop_lag_seconds)
# The speller's series in /metrics that the windows difference: name → its value in the scrape.
SERIES = {
    "calls": "charserve_model_call_seconds_count",
    "call_seconds": "charserve_model_call_seconds_sum",
    "words": "charserve_batch_requests_sum",  # every request of the open loop is one word
    "rows": "charserve_tokens_total",  # decoder rows, every row of every step
}


def probe(seconds: float) -> list[float]:
    """CPU ms per correction of one fixed batch of six misspellings, averaged over each second: in this process,
    one ONNX Runtime thread, on whatever cores it was started on."""
    from app.adapters.speller.model import Speller
    from app.settings import Settings

    settings = Settings(intra_op_threads=1)
    speller = Speller(settings.models_dir / "speller", settings)
    words = misspellings()[:6]
    speller.correct_words(words)
    per_second = []
    for _ in range(int(seconds)):
        end, spent = time.monotonic() + 1, []
        while time.monotonic() < end:
            started = time.thread_time()
            speller.correct_words(words)
            spent.append((time.thread_time() - started) * 1000)
        per_second.append(round(statistics.fmean(spent), 2))
    return per_second


def run_probe(cores: str, seconds: float) -> list[float]:
    command = ["taskset", "-c", cores, sys.executable, "-m", "bench.latency_tail", "--probe", str(seconds)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def scraped_counters(text: str) -> dict[str, float]:
    """The SERIES of the speller's model from one /metrics scrape, and the event loop's wake-ups: all of them and
    those more than STALL_S late."""
    wanted = {sample: key for key, sample in SERIES.items()}
    found = dict.fromkeys([*SERIES, "wakeups", "wakeups_on_time"], 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted and sample.labels.get("model") == "speller":
                found[wanted[sample.name]] = sample.value
            elif sample.name == "charserve_event_loop_lag_seconds_count":
                found["wakeups"] = sample.value
            elif sample.name == "charserve_event_loop_lag_seconds_bucket" and float(sample.labels["le"]) == STALL_S:
                found["wakeups_on_time"] = sample.value
    return found


def cpu_seconds(pid: int, cores: list[int]) -> dict[str, float]:
    """The process `pid`'s CPU seconds (user + system, its threads included) and the seconds the hypervisor
    stole from `cores`, from /proc (Linux counts both in clock ticks)."""
    tick = os.sysconf("SC_CLK_TCK")
    # Fields after the parenthesised command name: utime and stime are the 12th and 13th.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    stolen = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cores:
            stolen += int(values[7])  # user nice system idle iowait irq softirq steal
    return {"server_cpu": (int(fields[11]) + int(fields[12])) / tick, "steal": stolen / tick}


async def scrape(
    url: str, every: float, until: asyncio.Event, into: list[tuple[float, dict[str, float]]], pid: int, cores: list[int]
) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        while True:
            last = until.is_set()
            into.append((time.perf_counter(), {**scraped_counters((await client.get(url)).text),
                                               **cpu_seconds(pid, cores)}))  # fmt: skip
            if last:
                return
            await asyncio.sleep(every)


async def open_loop_with_scrapes(
    base: str, rate: float, seconds: float, every: float, pid: int, cores: list[int]
) -> tuple[dict, list[dict]]:
    scrapes: list[tuple[float, dict[str, float]]] = []
    done = asyncio.Event()
    scraper = asyncio.create_task(scrape(f"{base}/metrics", every, done, scrapes, pid, cores))
    result = await open_loop(f"{base}/correct", BODIES["/correct"], rate, seconds)
    done.set()
    await scraper
    return result.summary(), windows(np.array(result.sent_at), np.array(result.latencies) * 1000, scrapes)


def windows(sent: np.ndarray, latency_ms: np.ndarray, scrapes: list[tuple[float, dict[str, float]]]) -> list[dict]:
    """One row per interval between two scrapes: the requests sent in it and what the speller did in it."""
    rows = []
    start = scrapes[0][0]
    for (t0, before), (t1, after) in itertools.pairwise(scrapes):
        mine = latency_ms[(sent >= t0) & (sent < t1)]
        delta = {key: after[key] - before[key] for key in after}
        rows.append({
            "t_s": round(t0 - start, 2),
            "sent": int(mine.size),
            "p99_ms": round(float(np.percentile(mine, 99)), 1) if mine.size else None,
            "busy": round(delta["call_seconds"] / (t1 - t0), 3),
            "words_per_call": round(delta["words"] / delta["calls"], 2) if delta["calls"] else None,
            "ms_per_call": round(1000 * delta["call_seconds"] / delta["calls"], 2) if delta["calls"] else None,
            "us_per_row": round(1e6 * delta["call_seconds"] / delta["rows"], 2) if delta["rows"] else None,
            "loop_stalls": int(delta["wakeups"] - delta["wakeups_on_time"]),
            "server_cpu": round(delta["server_cpu"] / (t1 - t0), 3),
            "steal": round(delta["steal"] / (t1 - t0), 3),
        })  # fmt: skip
    return rows


def compare(rounds: list[dict]) -> dict:
    """Windows whose requests missed the bar against the others, over all rounds."""
    every = [w for r in rounds for w in r["windows"] if w["p99_ms"] is not None and w["words_per_call"] is not None]
    slow = [w for w in every if w["p99_ms"] > SLOW_MS]
    fast = [w for w in every if w["p99_ms"] <= SLOW_MS]

    def means(group: list[dict]) -> dict:
        keys = ("p99_ms", "busy", "words_per_call", "ms_per_call", "us_per_row", "loop_stalls", "server_cpu", "steal")
        return {"windows": len(group), **{k: round(statistics.fmean(w[k] for w in group), 2) if group else None
                                          for k in keys}}  # fmt: skip

    return {f"p99 over {SLOW_MS:g} ms": means(slow), f"p99 within {SLOW_MS:g} ms": means(fast)}


def stolen(windows: list[dict]) -> str:
    shares = [w["steal"] for w in windows if "steal" in w]
    return f"{statistics.fmean(shares):.3f} / {max(shares):.3f}" if shares else "—"


def write_report(report: dict, out: Path) -> None:
    lines = [
        "# Where the open loop's slow requests come from",
        "",
        f"Measured {report['measured']} with `{report['command']}`: charserve on core(s) "
        f"{report['server_cores']}, the load generator on {report['client_cores']}, `/correct`, one misspelling per "
        f"request; windows of {report['window_s']} s; server settings: "
        f"{', '.join(report.get('server_env') or []) or 'as bench.serving runs (b)'}.",
        "",
        "## Rounds",
        "",
        "| round | probe ms per batch of 6 (min / median / max over seconds) | closed-loop peak req/s | "
        f"open loop req/s | p50 ms | p99 ms | windows with p99 > {SLOW_MS:g} ms | stolen from the server's cores "
        "(mean / largest share of a window) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rounds"]:
        p = r["probe_ms"]
        late = sum(1 for w in r["windows"] if w["p99_ms"] is not None and w["p99_ms"] > SLOW_MS)
        lines.append(
            f"| {r['round']} | {min(p):.1f} / {statistics.median(p):.1f} / {max(p):.1f} | {r['peak_req_s']} | "
            f"{r['open']['ok_per_s']} | {r['open']['p50_ms']} | {r['open']['p99_ms']} | {late} of {len(r['windows'])} "
            f"| {stolen(r['windows'])} |"
        )
    lines += [
        "",
        "## Windows that missed the bar against the others (all rounds)",
        "",
        "| windows | count | mean p99 ms | speller busy (share of the window in model calls) | words per call | "
        f"ms per call | µs per decoded row | event-loop wake-ups over {1000 * STALL_S:g} ms late, per window | "
        "server CPU (share of the window) | stolen from its cores (share of the window) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in report["compare"].items():
        lines.append(f"| {name} | {m['windows']} | {m['p99_ms']} | {m['busy']} | {m['words_per_call']} | "
                     f"{m['ms_per_call']} | {m['us_per_row']} | {m.get('loop_stalls', '—')} | "
                     f"{m.get('server_cpu', '—')} | {m.get('steal', '—')} |")  # fmt: skip
    late, on_time = report["compare"].values()
    if late["windows"] and on_time["windows"]:
        lines += [
            "",
            f"Windows over the bar had {late['words_per_call'] / on_time['words_per_call']:.2f}x the words per "
            f"model call and {late['ms_per_call'] / on_time['ms_per_call']:.2f}x the ms per call of the others, at "
            f"{late['us_per_row'] / on_time['us_per_row']:.2f}x the µs per decoded row.",
        ]
    lines += [
        "",
        "The probe runs the same six words every time in a process of its own on the server's core with the "
        "server stopped: its spread is the machine's, not the server's. µs per decoded row is the speller's "
        f"model-call time over the beam rows it decoded in the window (plot: {out.with_suffix('.png').name}).",
        "",
    ]
    out.with_suffix(".md").write_text("\n".join(lines))
    plot(report, out.with_suffix(".png"))


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = report["rounds"]
    fig, axes = plt.subplots(len(rounds), 1, figsize=(9, 2.6 * len(rounds)), squeeze=False)
    for ax, r in zip(axes[:, 0], rounds, strict=True):
        t = [w["t_s"] for w in r["windows"]]
        ax.plot(t, [w["p99_ms"] for w in r["windows"]], color="tab:red", label="p99 ms of the window's requests")
        ax.axhline(SLOW_MS, color="tab:red", linestyle=":", linewidth=1)
        ax.set_ylabel("p99 ms")
        twin = ax.twinx()
        twin.plot(t, [w["ms_per_call"] for w in r["windows"]], color="tab:blue", label="speller ms per model call")
        twin.set_ylabel("ms per call")
        ax.set_title(f"round {r['round']}: open loop at {r['open']['ok_per_s']} req/s, p99 {r['open']['p99_ms']} ms",
                     fontsize=9)  # fmt: skip
        handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        ax.legend(handles=handles, fontsize=7, loc="upper left")
    axes[-1, 0].set_xlabel("seconds into the open loop")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server-cores", default="0")
    parser.add_argument("--client-cores", default="1")
    parser.add_argument("--seconds", type=float, default=12)
    parser.add_argument("--window", type=float, default=0.5, help="seconds between two reads of /metrics")
    parser.add_argument("--probe-seconds", type=float, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--port", type=int, default=18450)
    parser.add_argument("--env", nargs="*", default=[], metavar="KEY=VALUE",
                        help="server settings to try, e.g. CHARSERVE_INFERENCE_WORKERS=2")  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "latency_tail.json")
    parser.add_argument("--probe", type=float, metavar="SECONDS", help=argparse.SUPPRESS)  # the probe's process
    parser.add_argument("--report-only", action="store_true", help="rewrite the report and plot from --out's JSON")
    args = parser.parse_args(argv)
    if args.probe:
        print(json.dumps(probe(args.probe)))
        return
    if args.report_only:
        return write_report(json.loads(args.out.read_text()), args.out)
    os.sched_setaffinity(0, {int(c) for c in args.client_cores.split(",")})
    rounds = []
    for round_ in range(args.repeats):
        probe_ms = run_probe(args.server_cores, args.probe_seconds)
        server = start_server(dict(kv.split("=", 1) for kv in args.env), args.server_cores, args.port)
        base = f"http://127.0.0.1:{args.port}"
        try:
            peak = asyncio.run(closed_loop(f"{base}/correct", BODIES["/correct"], 64, args.seconds)).summary()
            cores = [int(c) for c in args.server_cores.split(",")]
            opened, per_window = asyncio.run(
                open_loop_with_scrapes(base, peak["ok_per_s"] / 2, args.seconds, args.window, server.pid, cores)
            )
        finally:
            stop_server(server)
        row = {"round": round_, "probe_ms": probe_ms, "peak_req_s": peak["ok_per_s"], "open": opened,
               "windows": per_window}  # fmt: skip
        print(json.dumps({k: v for k, v in row.items() if k != "windows"}), flush=True)
        rounds.append(row)
    report = {
        **run_record("bench.latency_tail", argv),
        "server_cores": args.server_cores,
        "client_cores": args.client_cores,
        "window_s": args.window,
        "server_env": args.env,
        "rounds": rounds,
        "compare": compare(rounds),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    write_report(report, args.out)


if __name__ == "__main__":
    main()
