"""Load generators for any server with our HTTP API (aiohttp): a closed loop at fixed concurrency and an open
loop at a constant arrival rate. Each reports req/s, p50/p95/p99 latency of successful requests, and
counts by status.

    python -m bench.load closed --url http://127.0.0.1:8000 --endpoint /correct --concurrency 64 --seconds 10
    python -m bench.load open --url http://127.0.0.1:8000 --endpoint /classify --rate 200 --seconds 10

The open loop sends on schedule whatever the server does (it does not wait for answers), so queueing
shows up as latency instead of silently lowering the load, the mistake a closed loop makes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import aiohttp
import numpy as np


def misspellings(count: int = 2000, seed: int = 0) -> list[str]:
    """Distinct one-edit typos of frequent English words: the speller deduplicates the words of a batch, so a
    small pool would flatter batching."""
    from wordfreq import top_n_list

    from training.speller_data import make_typo

    rng = random.Random(seed)
    words = [w for w in top_n_list("en", 20000) if w.isascii() and w.isalpha() and len(w) >= 4]
    typos = {make_typo(w, rng) for w in words}
    known = set(words)
    return rng.sample(sorted(t for t in typos if t not in known), count)


# What each endpoint gets: single short inputs, drawn at random from a pool.
BODIES = {
    "/correct": [{"text": w} for w in misspellings()],
    "/classify": [
        {"text": n}
        for n in ("Antonio_Veciana", "Kneuterdijk_Palace", "Conus_alba", "The_Who", "A_Midsummer_Night's_Dream",
                  "%C5%BDeljko_Ivanek", "Royal_Dutch_Shell", "Acacia_nigra", "Lake_Geneva", "Abbey_Road_(album)")
    ],
}  # fmt: skip

# Poems of mixed lengths, sampled (each its own seed): a third each of 20, 64 and 100-200 characters.
POEM_BODIES = [
    body
    for i in range(300)
    for body in (
        {"form": "wuyan_jueju", "temperature": 0.8, "seed": i},
        {"form": "qiyan_lushi", "temperature": 0.8, "seed": i},
        {"form": "free", "max_chars": 100 + i % 101, "temperature": 0.8, "seed": i},
    )
]
BODIES["/poem"] = POEM_BODIES


@dataclass
class Result:
    seconds: float
    latencies: list[float] = field(default_factory=list)  # successful requests only
    sent_at: list[float] = field(default_factory=list)  # their perf_counter() when sent (or due), same order
    statuses: Counter = field(default_factory=Counter)

    def summary(self) -> dict:
        ok = np.array(self.latencies) * 1000
        pct = (lambda q: round(float(np.percentile(ok, q)), 2)) if ok.size else (lambda q: None)
        return {
            "seconds": round(self.seconds, 2),
            "requests": sum(self.statuses.values()),
            "ok": int(ok.size),
            "ok_per_s": round(ok.size / self.seconds, 1),
            "p50_ms": pct(50),
            "p95_ms": pct(95),
            "p99_ms": pct(99),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items(), key=lambda kv: str(kv[0]))},
        }


async def _one(session: aiohttp.ClientSession, url: str, body: dict, result: Result, due: float | None = None) -> None:
    """One request; its latency counts from `due` (when an open loop's schedule says it goes) if given, so a
    late send is charged too, not hidden (coordinated omission)."""
    started = time.perf_counter() if due is None else due
    try:
        async with session.post(url, json=body) as response:
            await response.read()
            status: int | str = response.status
    except (TimeoutError, aiohttp.ClientError) as exc:
        status = type(exc).__name__
    result.statuses[status] += 1
    if status == 200:
        result.latencies.append(time.perf_counter() - started)
        result.sent_at.append(started)


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """The load generator's own long-lived objects (the bodies, wordfreq's lists, the bench's modules: hundreds
    of thousands) frozen while it measures. Unfrozen, every full collection walks them all: a pause of the client
    in the middle of a run that every request in flight is charged for, as if the server had been slow."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def client_session(limit: int, timeout_s: float) -> aiohttp.ClientSession:
    """A client of at most `limit` connections (0: no bound), each request given `timeout_s` in all."""
    connector = aiohttp.TCPConnector(limit=limit, force_close=False)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s))


async def closed_loop(
    url: str, bodies: list[dict], concurrency: int, seconds: float, warmup_s: float = 1.0, timeout_s: float = 30
) -> Result:
    """`concurrency` clients, each sending its next request as soon as the last one is answered."""
    rng = random.Random(0)
    with frozen_heap():
        async with client_session(concurrency, timeout_s) as session:
            warm = Result(0)
            stop = time.perf_counter() + warmup_s

            async def client(result: Result, until: float) -> None:
                while time.perf_counter() < until:
                    await _one(session, url, rng.choice(bodies), result)

            await asyncio.gather(*(client(warm, stop) for _ in range(concurrency)))
            result = Result(seconds)
            started = time.perf_counter()
            await asyncio.gather(*(client(result, started + seconds) for _ in range(concurrency)))
            result.seconds = time.perf_counter() - started
            return result


async def open_loop(url: str, bodies: list[dict], rate: float, seconds: float, timeout_s: float = 30) -> Result:
    """Requests sent at `rate` per second on a fixed schedule, each on its own task, answered or not."""
    rng = random.Random(0)
    result = Result(seconds)
    with frozen_heap():
        async with client_session(0, timeout_s) as session:
            started = time.perf_counter()
            tasks = []
            for i in range(int(rate * seconds)):
                due = started + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(_one(session, url, rng.choice(bodies), result, due)))
            await asyncio.gather(*tasks)
    # Throughput over the sending window: late answers count, but do not stretch the window.
    result.seconds = max(seconds, 1e-9)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["closed", "open"])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--endpoint", choices=sorted(BODIES), default="/correct")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second (open loop)")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    url = args.url.rstrip("/") + args.endpoint
    bodies = BODIES[args.endpoint]
    if args.mode == "closed":
        result = asyncio.run(closed_loop(url, bodies, args.concurrency, args.seconds))
    else:
        result = asyncio.run(open_loop(url, bodies, args.rate, args.seconds))
    print(json.dumps({"mode": args.mode, "endpoint": args.endpoint, **result.summary()}))


if __name__ == "__main__":
    main()
