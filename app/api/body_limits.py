"""The request body, read whole before the app sees the request: bounded in size while it is read, and in time.

A client that sends headers and then stalls, or trickles its body, would otherwise hold an admission slot
(app/api/middleware.py) and a task for as long as it likes; one that sends a chunked body declares no length, so
a check of `Content-Length` alone would let it through. Here the bytes are counted as they arrive (413 the
moment they pass the limit) and the whole body must arrive within a bound (408 past it). Only then does the
request go on to admission and routing, with the body replayed to them.
"""

from __future__ import annotations

import asyncio

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.http_middleware import HttpMiddleware


class BodyTooLarge(Exception):
    pass


class BodyReaderMiddleware(HttpMiddleware):
    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        super().__init__(app)
        self.max_bytes, self.timeout_s = max_bytes, timeout_s

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await refuse(413, f"the body has {declared} bytes; the limit is {self.max_bytes}", scope, send)
            return
        try:
            async with asyncio.timeout(self.timeout_s):  # no extra task per request, unlike wait_for
                body = await self._read(receive)
        except BodyTooLarge:
            await refuse(413, f"the body is over the limit of {self.max_bytes} bytes", scope, send)
            return
        except TimeoutError:
            await refuse(408, f"the body did not arrive within {self.timeout_s:g} s", scope, send)
            return
        if body is None:
            return  # the client left before its body was in: there is no one to answer
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body once, then the client's own messages (a disconnect, which streaming responses listen for)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def refuse(status: int, detail: str, scope: Scope, send: Send) -> None:
    """A JSON refusal that also closes the connection: the rest of the body may still be on its way."""
    response = JSONResponse({"detail": detail}, status_code=status, headers={"Connection": "close"})

    async def nothing() -> Message:
        return {"type": "http.disconnect"}

    await response(scope, nothing, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None
