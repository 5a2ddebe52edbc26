"""Prometheus metrics (prometheus-client): what the HTTP layer, the schedulers and the models count.

Each app owns its registry, so that several apps in one process (the tests) never share counters. Under
`charserve serve --workers N` (PROMETHEUS_MULTIPROC_DIR set) every process writes its values to files there,
and /metrics of any HTTP worker shows them all: the engine's batches and every worker's requests.
"""

from __future__ import annotations

import asyncio
import os
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
CALL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)
LAG_INTERVAL_S = 0.01


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "charserve_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "charserve_request_seconds", "HTTP request latency", ["endpoint"], buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "charserve_queue_depth", "texts waiting for a batch", ["model"], registry=self.registry,
            multiprocess_mode="livesum",  # across processes: only the engine's queues count
        )  # fmt: skip
        self.rejected = Counter(
            "charserve_rejected",
            "requests refused: their model's queue was full, or (model http) too many requests in progress",
            ["model"],
            registry=self.registry,
        )  # fmt: skip
        self.batch_size = Histogram(
            "charserve_batch_size", "rows in one model call (words for the speller, names for the classifier)",
            ["model"], buckets=BATCH_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.batch_requests = Histogram(
            "charserve_batch_requests", "requests answered by one model call", ["model"], buckets=BATCH_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.call_seconds = Histogram(
            "charserve_model_call_seconds",
            "wall time of one model call in its worker thread: a whole batch (dynamic batching) or one decoding step "
            "of the running batch (continuous)",
            ["model"], buckets=CALL_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.loop_lag = Histogram(
            "charserve_event_loop_lag_seconds",
            f"how late a {LAG_INTERVAL_S * 1000:g} ms timer on the event loop fires: time the loop was busy with other "
            "work or not running at all",
            buckets=LAG_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.tokens = Counter(
            "charserve_tokens",
            "characters processed: decoded by the speller (every beam row, every step), read by the classifier",
            ["model"], registry=self.registry,
        )  # fmt: skip

        shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if shared:  # what /metrics shows: every process's files, this one's among them
            self.registry = CollectorRegistry()
            MultiProcessCollector(self.registry, path=shared)

    def observe_batch(self, model: str, rows: int, tokens: int) -> None:
        self.batch_size.labels(model).observe(rows)
        self.tokens.labels(model).inc(tokens)


async def watch_event_loop(metrics: Metrics, interval_s: float = LAG_INTERVAL_S) -> None:
    """Until cancelled: sleep `interval_s` over and over and record how late each wake-up is. A request held up
    before it reaches a model shows here if the event loop was what held it."""
    while True:
        started = time.perf_counter()
        await asyncio.sleep(interval_s)
        metrics.loop_lag.observe(max(time.perf_counter() - started - interval_s, 0.0))
