"""Admission control: a bound on the HTTP requests inside the app at once.

Past the bound a request is refused at once with 503, `Retry-After` and a JSON body, before its body is
read or validated: under overload on one core, parsing and answering alone would outrun the core and
every admitted request would wait behind them (docs/overload.md). Health, readiness and metrics are
always answered, so that probes and scrapers still see the process while it sheds load.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app.metrics import Metrics

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
