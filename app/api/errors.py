"""How the engine's refusals become HTTP answers, and the error responses every route documents."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from app.api.schemas import ErrorResponse
from app.engine.errors import DeadlineExceeded, Overloaded

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        413: "a text or the body is too long",
        415: "the body is not JSON",
        422: "the body does not match the schema",
        503: "overloaded or not ready; retry after the Retry-After header's seconds",
        504: "the request's model work outlasted its deadline",
    }.items()
}


async def overloaded(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": f"overloaded: {exc}"}, status_code=503, headers={"Retry-After": "1"})


async def deadline_exceeded(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": f"deadline exceeded: {exc}"}, status_code=504)


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Overloaded, overloaded)
    app.add_exception_handler(DeadlineExceeded, deadline_exceeded)
