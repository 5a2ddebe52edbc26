"""How the engine's refusals become HTTP answers, and the error responses every route documents."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from app.api.schemas import ErrorResponse
from app.engine.errors import DeadlineExceeded, InvalidInput, Overloaded

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        401: "API keys are required (CHARSERVE_API_KEYS) and none or a wrong one was given",
        408: "the body did not arrive within CHARSERVE_BODY_TIMEOUT_S",
        413: "too many texts, a text too long, or the body over CHARSERVE_MAX_BODY_BYTES",
        415: "the body is not sent as application/json",
        422: "the body is not valid JSON (UTF-8, no NaN or Infinity, no lone surrogates, not too deep) or does not "
        "match the schema",
        500: "the server failed on this request; it is logged, and the connection stays usable",
        503: "overloaded or not ready; retry after the Retry-After header's seconds",
        504: "the request's model work outlasted its deadline",
    }.items()
}


async def overloaded(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": f"overloaded: {exc}"}, status_code=503, headers={"Retry-After": "1"})


async def deadline_exceeded(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": f"deadline exceeded: {exc}"}, status_code=504)


async def invalid_input(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=422)


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(InvalidInput, invalid_input)
    app.add_exception_handler(Overloaded, overloaded)
    app.add_exception_handler(DeadlineExceeded, deadline_exceeded)
