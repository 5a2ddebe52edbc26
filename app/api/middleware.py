"""The HTTP layer's own middlewares, plain ASGI (Starlette's `@app.middleware("http")` wraps each request in extra
tasks and streams, which cost as much as a small model call here):

- `MetricsMiddleware` counts, times and logs every request (one JSON access line each).
- `ConcurrencyLimitMiddleware` is admission control: a bound on the HTTP requests inside the app at once.

Past the bound a request is refused at once with 503, `Retry-After` and a JSON body, before its body is
parsed or validated: under overload on one core, parsing and answering alone would outrun the core and
every admitted request would wait behind them (docs/overload.md). The body itself is read before admission
(app/api/body_limits.py), within a bound of bytes and seconds, so that a slow client holds no slot. Health,
readiness and metrics are always answered, so that probes and scrapers still see the process while it sheds load.
"""

from __future__ import annotations

import json
import logging
import time

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.metrics import Metrics

access_log = logging.getLogger("charserve.access")

ALWAYS_ANSWERED = frozenset({"/health", "/ready", "/metrics"})


class ConcurrencyLimitMiddleware:
    def __init__(self, app: ASGIApp, limit: int, metrics: Metrics) -> None:
        """`limit` 0: no bound."""
        self.app, self.limit, self.metrics = app, limit, metrics
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.limit or scope["path"] in ALWAYS_ANSWERED:
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            self.metrics.rejected.labels("http").inc()
            detail = f"overloaded: {self.active} requests in progress (limit {self.limit}); retry later"
            await JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "1"})(scope, receive, send)
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


class MetricsMiddleware:
    """Counts, times and logs every HTTP request. A plain ASGI middleware: Starlette's `@app.middleware("http")`
    wraps each request in extra tasks and streams, which cost as much as a small model call here."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        # The route's template, not the raw path: unknown paths share one label instead of one each.
        endpoint = getattr(scope.get("route"), "path", "unmatched")
        if endpoint != "/metrics":
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(elapsed)
        if not access_log.disabled:
            client = scope.get("client")
            line = {"method": scope["method"], "path": scope["path"], "status": status,
                    "ms": round(elapsed * 1000, 2), "client": client[0] if client else None,
                    "request_id": scope.get("state", {}).get("request_id")}  # fmt: skip
            access_log.info(json.dumps(line))
