"""X-Request-ID: the client's own when it is short and printable, else a new one; returned on every response and
kept in the request's scope, where the access log (app/api/middleware.py) reads it."""

from __future__ import annotations

import itertools
import os
import re

from starlette.types import Message, Receive, Scope, Send

from app.api.http_middleware import HttpMiddleware

HEADER = b"x-request-id"
VALID = re.compile(rb"[\x21-\x7e]{1,128}")  # visible ASCII: safe in a header and in a log line


class IdMaker:
    """New ids, 32 hex digits: a random prefix drawn once per process, then a counter. A random id a request
    (uuid4) reads the kernel's random source every time, a cost the server paid on every request; unique within
    a process and, by the prefix, across processes (drawn again in a forked child)."""

    def __init__(self) -> None:
        self.pid, self.prefix, self.counter = 0, "", itertools.count()

    def __call__(self) -> str:
        if self.pid != os.getpid():
            self.pid, self.prefix, self.counter = os.getpid(), os.urandom(8).hex(), itertools.count()
        return f"{self.prefix}{next(self.counter):016x}"


new_id = IdMaker()


def request_id(scope: Scope) -> str | None:
    return scope.get("state", {}).get("request_id")


class RequestIdMiddleware(HttpMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        given = next((value for name, value in scope["headers"] if name == HEADER), b"")
        value = given.decode("ascii") if VALID.fullmatch(given) else new_id()
        scope.setdefault("state", {})["request_id"] = value

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (HEADER, value.encode("ascii"))]
            await send(message)

        await self.app(scope, receive, send_with_id)
