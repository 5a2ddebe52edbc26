"""What must hold for every client whatever the others do, measured on the server as shipped (`charserve serve`,
the bundled models), each part on a server of its own:

- **burst**: a closed loop of 500 clients on `/correct` and `/classify`, far past capacity: every answer must be a
  200 or a fast 503, each with a JSON body; right after it, requests are answered at once.
- **stream disconnects**: clients that open a streamed `/poem` and hang up after its first event; their admission
  slots must come back (a closed loop just under the bound afterwards gets no 503).
- **soak**: a mixed load on the three endpoints for --soak-seconds, the server's resident memory sampled
  throughout: it must stay flat after warm-up.
- **SIGTERM in flight**: requests of every kind in progress when the server gets SIGTERM: each must be answered.
- **SIGTERM with a stalled client**: a client that sent part of a body and went quiet must not hold shutdown past
  its bound (UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN).

    python -m bench.resilience --soak-seconds 480

The server runs on --server-cores, this client on --client-cores. Writes docs/resilience.json and
docs/resilience.md. The tests check each of these properties on a small scale (tests/test_hostile_clients.py);
this measures them at full scale.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

import aiohttp
import numpy as np

from bench.harness import pinned_parser, run_record, save_report
from bench.load import BODIES, client_session, misspellings
from bench.serving import ROOT, start_server, stop_server

SERVE = ["-m", "app.cli", "serve"]
TIMEOUT_S = 60  # per request: far past any answer here, so that only a hang runs into it
MIXED = ["/correct", "/classify", "/poem"]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def post(session: aiohttp.ClientSession, url: str, body: dict) -> tuple[int | str, bool, float]:
    """(status, whether the body is a JSON document, seconds)."""
    started = time.perf_counter()
    try:
        async with session.post(url, json=body) as response:
            raw = await response.read()
            status: int | str = response.status
    except (TimeoutError, aiohttp.ClientError) as exc:
        return type(exc).__name__, False, time.perf_counter() - started
    try:
        json.loads(raw)
        is_json = True
    except ValueError:
        is_json = False
    return status, is_json, time.perf_counter() - started


def percentile_ms(seconds: list[float], q: float) -> float | None:
    return round(float(np.percentile(np.array(seconds) * 1000, q)), 1) if seconds else None


async def closed_mix(base: str, paths: list[str], concurrency: int, seconds: float) -> dict:
    """`concurrency` clients sending requests to `paths` in turn for `seconds`: statuses, non-JSON bodies, and the
    latency of the 200s and of the 503s."""
    rng = random.Random(0)
    statuses: Counter = Counter()
    latency: dict[str, list[float]] = {"200": [], "503": []}
    not_json = 0
    async with client_session(concurrency, TIMEOUT_S) as client:
        until = time.perf_counter() + seconds

        async def one_client(i: int) -> None:
            nonlocal not_json
            while time.perf_counter() < until:
                path = paths[i % len(paths)]
                status, is_json, took = await post(client, base + path, rng.choice(BODIES[path]))
                statuses[str(status)] += 1
                not_json += not is_json
                if str(status) in latency:
                    latency[str(status)].append(took)
                i += 1

        await asyncio.gather(*(one_client(i) for i in range(concurrency)))
    return {
        "statuses": dict(sorted(statuses.items())),
        "not_json": not_json,
        "p50_ms_200": percentile_ms(latency["200"], 50),
        "p99_ms_200": percentile_ms(latency["200"], 99),
        "p50_ms_503": percentile_ms(latency["503"], 50),
        "p99_ms_503": percentile_ms(latency["503"], 99),
    }


async def burst(base: str, concurrency: int, seconds: float) -> dict:
    result = await closed_mix(base, ["/correct", "/classify"], concurrency, seconds)
    # Right after: one client, one request at a time; each should be answered as on an idle server.
    after = []
    async with client_session(1, TIMEOUT_S) as client:
        for i in range(20):
            body = BODIES["/classify"][i % len(BODIES["/classify"])]
            after.append(await post(client, base + "/classify", body))
    result["after"] = {
        "statuses": dict(Counter(str(s) for s, _, _ in after)),
        "max_ms": round(max(t for _, _, t in after) * 1000, 1),
    }
    return result


async def stream_disconnects(base: str, count: int, parallel: int, probe_concurrency: int) -> dict:
    """`count` streamed poems, `parallel` at a time, each dropped after its first event; then a closed loop of
    `probe_concurrency` clients on /classify, which a leaked slot per disconnect would push into 503s."""
    first_event = Counter()
    gate = asyncio.Semaphore(parallel)
    async with client_session(parallel, TIMEOUT_S) as client:

        async def hang_up(i: int) -> None:
            body = {"form": "qiyan_lushi", "temperature": 0.8, "seed": i, "stream": True}
            async with gate, client.post(base + "/poem", json=body) as response:
                async for line in response.content:
                    if line.startswith(b"data:"):
                        first_event[response.status] += 1
                        break
                response.close()  # hang up mid-stream

        await asyncio.gather(*(hang_up(i) for i in range(count)))
    await asyncio.sleep(1.0)
    probe = await closed_mix(base, ["/classify"], probe_concurrency, 3.0)
    return {"disconnects": count, "first_event_statuses": dict(first_event), "probe": probe}


async def soak(base: str, pid: int, seconds: float, concurrency: int, sample_s: float) -> dict:
    samples: list[tuple[float, float]] = []
    started = time.perf_counter()

    async def sample() -> None:
        while time.perf_counter() - started < seconds:
            samples.append((round(time.perf_counter() - started, 1), round(rss_mb(pid), 1)))
            await asyncio.sleep(sample_s)

    load, _ = await asyncio.gather(closed_mix(base, MIXED, concurrency, seconds), sample())
    samples.append((round(time.perf_counter() - started, 1), round(rss_mb(pid), 1)))
    warm = next(rss for at, rss in samples if at >= min(60.0, seconds / 4))
    return {
        **load,
        "seconds": seconds,
        "rss_mb_at_start": samples[0][1],
        "rss_mb_after_warm_up": warm,
        "rss_mb_at_end": samples[-1][1],
        "rss_mb_max": max(rss for _, rss in samples),
        "growth_after_warm_up_mb": round(samples[-1][1] - warm, 1),
        "samples": samples,
    }


def maximal_correct(count: int = 64, words: int = 12) -> dict:
    vocabulary = misspellings()
    rng = random.Random(1)
    return {"texts": [" ".join(rng.choice(vocabulary) for _ in range(words)) for _ in range(count)]}


async def sigterm_in_flight(base: str, process: subprocess.Popen) -> dict:
    """Requests of every kind in progress, then SIGTERM to the server process (as `docker stop` sends to PID 1)."""
    bodies = [("/correct", maximal_correct())] * 4 + [("/correct", b) for b in BODIES["/correct"][:8]]
    bodies += [("/classify", b) for b in BODIES["/classify"][:8]]
    bodies += [("/poem", {"form": "qiyan_lushi", "temperature": 0.8, "seed": i}) for i in range(8)]
    async with client_session(len(bodies), TIMEOUT_S) as client:
        tasks = [asyncio.create_task(post(client, base + path, body)) for path, body in bodies]
        await asyncio.sleep(0.3)
        signalled = time.perf_counter()
        process.send_signal(signal.SIGTERM)
        answers = await asyncio.gather(*tasks)
    exit_code = await asyncio.to_thread(process.wait, 60)
    return {
        "in_flight": len(bodies),
        "statuses": dict(Counter(str(s) for s, _, _ in answers)),
        "exit_code": exit_code,
        "exit_after_s": round(time.perf_counter() - signalled, 2),
    }


def sigterm_stalled(port: int, process: subprocess.Popen, bound_s: int) -> dict:
    """A client that sent its headers and one byte of a 100-byte body, then nothing; SIGTERM; how long until exit."""
    stalled = socket.create_connection(("127.0.0.1", port))
    stalled.sendall(
        b"POST /classify HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"
    )
    time.sleep(0.5)
    signalled = time.perf_counter()
    process.send_signal(signal.SIGTERM)
    try:
        exit_code = process.wait(timeout=bound_s + 30)
    finally:
        stalled.close()
    return {"bound_s": bound_s, "exit_code": exit_code, "exit_after_s": round(time.perf_counter() - signalled, 2)}


def ending(code: int) -> str:
    """How the server process ended: uvicorn re-raises SIGTERM once its graceful shutdown is over."""
    return f"ended by {signal.Signals(-code).name} (status {code})" if code < 0 else f"exited with status {code}"


def markdown(report: dict) -> str:
    b, d, s = report["burst"], report["stream_disconnects"], report["soak"]
    t, st = report["sigterm_in_flight"], report["sigterm_stalled"]
    return "\n".join([
        "# Resilience",
        "",
        f"Measured {report['measured']} with `{report['command']}`, on the server as shipped (`charserve serve`, "
        f"bundled models), server on core(s) {report['server_cores']}, client on core(s) {report['client_cores']}. "
        "What each part checks is in bench/resilience.py's docstring.",
        "",
        "| part | what came back |",
        "|---|---|",
        f"| burst: {report['burst_concurrency']} clients on `/correct` + `/classify` for "
        f"{report['burst_seconds']:g} s | statuses {b['statuses']}; bodies not JSON: {b['not_json']}; "
        f"503 p50/p99 {b['p50_ms_503']}/{b['p99_ms_503']} ms; 200 p50/p99 {b['p50_ms_200']}/{b['p99_ms_200']} ms |",
        f"| right after the burst: 20 `/classify` one at a time | statuses {b['after']['statuses']}; "
        f"slowest {b['after']['max_ms']} ms |",
        f"| {d['disconnects']} streamed poems dropped after their first event | first events "
        f"{d['first_event_statuses']}; then {report['probe_concurrency']} clients for 3 s: statuses "
        f"{d['probe']['statuses']} |",
        f"| soak: {report['soak_concurrency']} clients on `/correct`, `/classify`, `/poem` for {s['seconds']:g} s | "
        f"statuses {s['statuses']}; bodies not JSON: {s['not_json']}; resident memory {s['rss_mb_at_start']} MB "
        f"at start, {s['rss_mb_after_warm_up']} MB after warm-up, {s['rss_mb_at_end']} MB at the end "
        f"(max {s['rss_mb_max']}): {s['growth_after_warm_up_mb']:+} MB after warm-up |",
        f"| SIGTERM with {t['in_flight']} requests in flight | statuses {t['statuses']}; "
        f"{ending(t['exit_code'])} {t['exit_after_s']} s after the signal |",
        f"| SIGTERM with a stalled client (bound {st['bound_s']} s) | "
        f"{ending(st['exit_code'])} {st['exit_after_s']} s after the signal |",
        "",
    ])


def main(argv: list[str] | None = None) -> None:
    parser = pinned_parser(__doc__, port=18460)
    parser.add_argument("--burst-concurrency", type=int, default=500)
    parser.add_argument("--burst-seconds", type=float, default=10)
    parser.add_argument("--disconnects", type=int, default=200)
    parser.add_argument("--probe-concurrency", type=int, default=90, help="just under the admission bound (96)")
    parser.add_argument("--soak-seconds", type=float, default=480)
    parser.add_argument("--soak-concurrency", type=int, default=16)
    parser.add_argument("--shutdown-bound", type=int, default=5, help="UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN for the "
                        "stalled-client part (seconds)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "resilience.json")
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {int(c) for c in args.client_cores.split(",")})
    base = f"http://127.0.0.1:{args.port}"
    report: dict = {**run_record("bench.resilience", argv), "server_cores": args.server_cores,
                    "client_cores": args.client_cores, "burst_concurrency": args.burst_concurrency,
                    "burst_seconds": args.burst_seconds, "probe_concurrency": args.probe_concurrency,
                    "soak_concurrency": args.soak_concurrency}  # fmt: skip

    server = start_server({}, args.server_cores, args.port, python_args=SERVE)
    try:
        report["burst"] = asyncio.run(burst(base, args.burst_concurrency, args.burst_seconds))
        print(json.dumps(report["burst"]), flush=True)
        report["stream_disconnects"] = asyncio.run(
            stream_disconnects(base, args.disconnects, 50, args.probe_concurrency)
        )
        print(json.dumps(report["stream_disconnects"]), flush=True)
        report["soak"] = asyncio.run(soak(base, server.pid, args.soak_seconds, args.soak_concurrency, 5.0))
        print(json.dumps({k: v for k, v in report["soak"].items() if k != "samples"}), flush=True)
    finally:
        stop_server(server)

    server = start_server({}, args.server_cores, args.port, python_args=SERVE)
    try:
        report["sigterm_in_flight"] = asyncio.run(sigterm_in_flight(base, server))
        print(json.dumps(report["sigterm_in_flight"]), flush=True)
    finally:
        stop_server(server)

    bound = {"UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN": str(args.shutdown_bound)}
    server = start_server(bound, args.server_cores, args.port, python_args=SERVE)
    try:
        report["sigterm_stalled"] = sigterm_stalled(args.port, server, args.shutdown_bound)
        print(json.dumps(report["sigterm_stalled"]), flush=True)
    finally:
        stop_server(server)
    save_report(args.out, report, markdown(report))


if __name__ == "__main__":
    main()
