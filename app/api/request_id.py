"""X-Request-ID: the client's own when it is short and printable, else a new one; returned on every response and
kept in the request's scope, where the access log (app/api/middleware.py) reads it."""

from __future__ import annotations

import re
import uuid

from starlette.types import Message, Receive, Scope, Send

from app.api.http_middleware import HttpMiddleware

HEADER = b"x-request-id"
VALID = re.compile(rb"[\x21-\x7e]{1,128}")  # visible ASCII: safe in a header and in a log line


def request_id(scope: Scope) -> str | None:
    return scope.get("state", {}).get("request_id")


class RequestIdMiddleware(HttpMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        given = next((value for name, value in scope["headers"] if name == HEADER), b"")
        value = given.decode("ascii") if VALID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = value

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (HEADER, value.encode("ascii"))]
            await send(message)

        await self.app(scope, receive, send_with_id)
