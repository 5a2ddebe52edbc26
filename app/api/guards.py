"""The ASGI middleware stack, outermost first, and why in that order:

1. RequestIdMiddleware: every answer carries X-Request-ID, refusals included, and the access log can name it.
2. MetricsMiddleware: counts, times and logs every request, whatever answers it.
3. UnhandledErrorMiddleware: an exception below becomes a JSON 500 on a connection that stays open.
4. CORSMiddleware (when origins are set): answers browsers' preflights, which carry no credentials.
5. ApiKeyMiddleware (when keys are set): refuses before the body is read.
6. BodyReaderMiddleware: the whole body, bounded in bytes and seconds, before anything else holds a slot.
7. ConcurrencyLimitMiddleware: admission, taken only by a request whose body is in.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.middleware.cors import CORSMiddleware

from app.api.auth import ApiKeyMiddleware, load_key_hashes
from app.api.body_limits import BodyReaderMiddleware
from app.api.middleware import ConcurrencyLimitMiddleware, MetricsMiddleware
from app.api.request_id import RequestIdMiddleware
from app.api.safe_errors import UnhandledErrorMiddleware, validation_error
from app.metrics import Metrics
from app.settings import Settings


def add_middlewares(app: FastAPI, settings: Settings, metrics: Metrics) -> None:
    # add_middleware puts each one outside those added before it: innermost first.
    app.add_middleware(ConcurrencyLimitMiddleware, limit=settings.max_concurrent_requests, metrics=metrics)
    app.add_middleware(BodyReaderMiddleware, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    if settings.api_keys is not None:
        hashes = load_key_hashes(settings.api_keys)
        app.add_middleware(ApiKeyMiddleware, key_hashes=hashes, open_probes=settings.api_keys_open_probes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(UnhandledErrorMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(RequestIdMiddleware)
    app.add_exception_handler(RequestValidationError, validation_error)
