"""Error answers that cannot fail themselves: a JSON 500 for any unhandled exception, on a connection that stays
usable, and 422 bodies that never echo what cannot be encoded.

Starlette's ServerErrorMiddleware answers an unhandled exception with a plain-text 500 and then re-raises it,
and uvicorn closes the connection on a re-raised exception, dropping the requests pipelined behind it.
UnhandledErrorMiddleware sits below it and answers instead, logging the exception once.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

from app.api.http_middleware import HttpMiddleware

log = logging.getLogger("charserve")
MAX_ECHO_CHARS = 200  # an invalid value is echoed back only when this short: a 1 MB input is not repeated


class UnhandledErrorMiddleware(HttpMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def send_and_note(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except Exception:
            if started:
                raise  # half an answer cannot be taken back: the connection must close so the client sees it cut
            log.exception("unhandled error in %s %s", scope["method"], scope["path"])
            body = {"detail": "internal error: the server failed on this request; it is logged and others go on"}
            await JSONResponse(body, status_code=500)(scope, receive, send)


def _encodable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def _safe_error(error: dict[str, Any]) -> dict[str, Any]:
    """One pydantic error with only what encodes: `input` when short and encodable, `ctx` values as text."""
    safe: dict[str, Any] = {
        "type": error.get("type", "value_error"),
        "loc": [part if isinstance(part, int) or _encodable(part) else "?" for part in error.get("loc", ())],
        "msg": _text(error.get("msg", "")),
    }
    echo = error.get("input")
    if _encodable(echo) and len(json.dumps(echo, ensure_ascii=False)) <= MAX_ECHO_CHARS:
        safe["input"] = echo
    if error.get("ctx"):
        safe["ctx"] = {_text(k): _text(v) for k, v in error["ctx"].items()}
    return safe


def _text(value: object) -> str:
    """str(value), its lone surrogates (if any) written as escapes: always encodable as UTF-8."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 body (`{"detail": [errors]}`), made safe to encode whatever the client sent."""
    return JSONResponse({"detail": [_safe_error(error) for error in exc.errors()]}, status_code=422)
