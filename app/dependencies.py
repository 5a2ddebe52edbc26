"""FastAPI dependencies: what a route needs, taken from the app's state rather than module globals.

All `async def`, though none awaits: FastAPI runs a plain `def` dependency in its thread pool, a thread hop
for each one on every request, which on a busy core waits for the interpreter lock that the model's thread
holds (docs/design.md)."""

from __future__ import annotations

from fastapi import HTTPException, Request

from app.batching import DynamicBatcher
from app.continuous import ContinuousBatcher, ContinuousSpeller
from app.metrics import Metrics
from app.poet import Poet
from app.registry import ModelRegistry
from app.settings import Settings
from app.speller_decision import Policy


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def _batcher(request: Request, name: str) -> DynamicBatcher | ContinuousBatcher | ContinuousSpeller:
    batcher = request.app.state.batchers.get(name)
    if batcher is None:
        # Loading, or left out of CHARSERVE_MODELS on purpose: either way not this process's to answer now.
        raise HTTPException(503, f"the {name} is not loaded", headers={"Retry-After": "5"})
    return batcher


async def get_speller(request: Request) -> DynamicBatcher | ContinuousSpeller:
    """The speller's scheduler: texts in, CorrectedText out, batched with other requests' texts or words."""
    return _batcher(request, "speller")


async def get_speller_policy(request: Request) -> Policy:
    """The server's correction policy (its threshold): a request may override parts of it."""
    speller = request.app.state.registry.models.get("speller")
    if speller is None:
        raise HTTPException(503, "the speller is not loaded", headers={"Retry-After": "5"})
    return speller.policy


async def get_classifier(request: Request) -> DynamicBatcher:
    """The classifier's scheduler: names in, Classification out, batched with other requests' names."""
    return _batcher(request, "classifier")


async def get_poet(request: Request) -> ContinuousBatcher[Poet]:
    """The poet's scheduler: plans in, poems out, one character of every live poem per step."""
    return _batcher(request, "poet")


async def require_json(request: Request) -> None:
    """JSON bodies only, and none larger than the settings allow (checked before the body is read)."""
    limit = request.app.state.settings.max_body_bytes
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise HTTPException(413, f"the body has {length} bytes; the limit is {limit}")
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise HTTPException(415, f"send the body as application/json, not {content_type or 'no content type'}")
