"""Prometheus metrics (prometheus-client) and one structured access-log line per request.

Each app owns its registry, so that several apps in one process (the tests) never share counters.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.requests import Request
from starlette.responses import Response

access_log = logging.getLogger("charserve.access")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


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
            "charserve_queue_depth", "texts waiting for a batch", ["model"], registry=self.registry
        )
        self.rejected = Counter(
            "charserve_rejected", "requests refused because their model's queue was full", ["model"],
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
        self.tokens = Counter(
            "charserve_tokens",
            "characters processed: decoded by the speller (every beam row, every step), read by the classifier",
            ["model"], registry=self.registry,
        )  # fmt: skip

    def observe_batch(self, model: str, rows: int, tokens: int) -> None:
        self.batch_size.labels(model).observe(rows)
        self.tokens.labels(model).inc(tokens)


def endpoint_of(request: Request) -> str:
    """The route's template, not the raw path: unknown paths share one label instead of one each."""
    route = request.scope.get("route")
    return getattr(route, "path", "unmatched")


def metrics_middleware(metrics: Metrics) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable]:
    async def middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            elapsed = time.perf_counter() - started
            endpoint = endpoint_of(request)
            if endpoint != "/metrics":
                metrics.requests.labels(endpoint, str(status)).inc()
                metrics.latency.labels(endpoint).observe(elapsed)
            access_log.info(
                json.dumps(
                    {
                        "method": request.method,
                        "path": request.url.path,
                        "status": status,
                        "ms": round(elapsed * 1000, 2),
                        "client": request.client.host if request.client else None,
                    }
                )
            )

    return middleware
