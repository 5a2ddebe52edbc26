"""FastAPI dependencies: what a route needs, taken from the app's state rather than module globals.

All `async def`, though none awaits: FastAPI runs a plain `def` dependency in its thread pool, a thread hop
for each one on every request, which on a busy core waits for the interpreter lock that the model's thread
holds (docs/design.md)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, get_args

from fastapi import HTTPException, Request

from app.api.schemas import PoetName
from app.catalog import ModelRegistry
from app.engine.protocol import Scheduler
from app.metrics import Metrics
from app.settings import Settings


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def _not_loaded(name: str) -> HTTPException:
    # Loading, or left out of CHARSERVE_MODELS on purpose: either way not this process's to answer now.
    return HTTPException(503, f"the {name} is not loaded", headers={"Retry-After": "5"})


def scheduler_of(name: str) -> Callable[[Request], Awaitable[Scheduler]]:
    """A dependency giving the named model's scheduler: the requests' items in, their answers out."""

    async def scheduler(request: Request) -> Scheduler:
        found = request.app.state.schedulers.get(name)
        if found is None:
            raise _not_loaded(name)
        return found

    return scheduler


get_speller = scheduler_of("speller")
get_classifier = scheduler_of("classifier")


async def get_speller_model(request: Request) -> Any:
    """The speller's adapter, whose tuned policy a request's own options start from."""
    found = request.app.state.registry.models.get("speller")
    if found is None:
        raise _not_loaded("speller")
    return found


POETS = get_args(PoetName)


async def get_poets(request: Request) -> Callable[[str], tuple[Scheduler, Any]]:
    """A dependency giving the poet a request names (poet, poet_transformer): its scheduler and its adapter."""
    state = request.app.state

    def chosen(name: str) -> tuple[Scheduler, Any]:
        if name not in state.settings.models:  # never to be loaded here: the request's to change, not to retry
            served = [poet for poet in POETS if poet in state.settings.models]
            raise HTTPException(422, f"the poet {name!r} is not served here; this server serves {served}")
        scheduler, model = state.schedulers.get(name), state.registry.models.get(name)
        if scheduler is None or model is None:
            raise _not_loaded(name)
        return scheduler, model

    return chosen


async def require_json(request: Request) -> None:
    """JSON bodies only (their size is bounded before this, as they are read: app/api/body_limits.py)."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise HTTPException(415, f"send the body as application/json, not {content_type or 'no content type'}")
