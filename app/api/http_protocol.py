"""uvicorn's HTTP protocols as charserve runs them: `--http app.api.http_protocol:HttpToolsProtocol` (or
`:H11Protocol`), as the Makefile and the images set through UVICORN_HTTP. Two changes to uvicorn's own:

- A bound on the wait for a request's head. uvicorn bounds the idle time between requests on a kept-alive
  connection (--timeout-keep-alive), but not the wait for the first request's head, nor a head that trickles in
  a byte at a time (each byte restarts the idle timer). A client doing either holds a connection for as long as
  it likes, and enough of them take every connection --limit-concurrency allows. Here the head must be in
  within CHARSERVE_HEADER_TIMEOUT_S of the connection's opening or of the previous answer; past it the client
  gets 408 and the connection is closed. The body has its own bound, in the app (app/api/body_limits.py).
- Past --limit-concurrency, uvicorn answers 503 in plain text; here the same refusal is JSON, as every other.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from functools import cache
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http import h11_impl, httptools_impl

from app.settings import Settings

_BODY = json.dumps({"detail": "the request's head did not arrive in time"}).encode()
REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_BODY), _BODY)
)


log = logging.getLogger("uvicorn.error")

# How uvicorn runs charserve wherever it is started (the Makefile, the images, `charserve serve`): uvicorn's own
# UVICORN_* variables, with these defaults. SIGTERM drains in-flight requests for at most the first, in seconds;
# the second bounds the connections (and requests) at once; the third is this module's protocol.
SERVER_DEFAULTS = {
    "UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN": "30",
    "UVICORN_LIMIT_CONCURRENCY": "1024",
    "UVICORN_HTTP": "app.api.http_protocol:HttpToolsProtocol",
}


def server_options() -> dict[str, Any]:
    """uvicorn.run's options for the three, from the environment or the defaults."""
    value = {name: os.environ.get(name, default) for name, default in SERVER_DEFAULTS.items()}
    return {
        "timeout_graceful_shutdown": int(value["UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN"]),
        "limit_concurrency": int(value["UVICORN_LIMIT_CONCURRENCY"]),
        "http": value["UVICORN_HTTP"],
    }


@cache
def configured_timeout_s() -> float:
    return Settings().header_timeout_s


class OverConnectionLimit:
    """uvicorn's --limit-concurrency check, answered in JSON: in the request's own task, which is one of `tasks`."""

    def __init__(self, app: ASGIApp, connections: set, tasks: set, limit: int) -> None:
        self.app, self.connections, self.tasks, self.limit = app, connections, tasks, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (len(self.connections) >= self.limit or len(self.tasks) > self.limit):
            log.warning("Exceeded concurrency limit.")
            detail = f"overloaded: {len(self.connections)} connections open (limit {self.limit}); retry later"
            headers = {"Retry-After": "1", "Connection": "close"}
            await JSONResponse({"detail": detail}, status_code=503, headers=headers)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class HeaderTimeout:
    """Mixed into a uvicorn protocol, whose `cycle` (the request being answered) changes when a head arrives."""

    timeout_s: float | None = None  # None: CHARSERVE_HEADER_TIMEOUT_S
    _head_timer: asyncio.TimerHandle | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limit = self.limit_concurrency  # type: ignore[has-type]
        if limit is not None:  # checked by the wrapper instead, so that the refusal is JSON
            self.app = OverConnectionLimit(self.app, self.connections, self.tasks, limit)  # type: ignore[has-type]
            self.limit_concurrency = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        self._await_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)  # type: ignore[misc]

    def _await_head(self) -> None:
        self._stop_waiting()
        if not self.transport.is_closing():  # type: ignore[attr-defined]
            timeout_s = self.timeout_s if self.timeout_s is not None else configured_timeout_s()
            self._head_timer = self.loop.call_later(timeout_s, self._head_too_slow, self.cycle)  # type: ignore[attr-defined]

    def _stop_waiting(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self, cycle_before: object) -> None:
        self._head_timer = None
        cycle = self.cycle  # type: ignore[attr-defined]
        idle = cycle is None or cycle.response_complete  # a pipelined request may be in progress: not idle
        if cycle is cycle_before and idle and not self.transport.is_closing():  # type: ignore[attr-defined]
            self.transport.write(REQUEST_TIMEOUT)  # type: ignore[attr-defined]
            self.transport.close()  # type: ignore[attr-defined]


class H11Protocol(HeaderTimeout, h11_impl.H11Protocol):
    pass


class HttpToolsProtocol(HeaderTimeout, httptools_impl.HttpToolsProtocol):
    pass
