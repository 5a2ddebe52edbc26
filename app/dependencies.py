"""FastAPI dependencies: what a route needs, taken from the app's state rather than module globals."""

from __future__ import annotations

from fastapi import HTTPException, Request

from app.inference import InferenceRunner
from app.registry import ModelRegistry
from app.settings import Settings
from app.speller import Speller


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


def get_runner(request: Request) -> InferenceRunner:
    return request.app.state.runner


def get_speller(request: Request) -> Speller:
    model = get_registry(request).models.get("speller")
    if model is None:
        raise HTTPException(503, "the speller is not loaded", headers={"Retry-After": "5"})
    return model


def require_json(request: Request) -> None:
    """JSON bodies only, and none larger than the settings allow (checked before the body is read)."""
    limit = get_settings(request).max_body_bytes
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise HTTPException(413, f"the body has {length} bytes; the limit is {limit}")
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise HTTPException(415, f"send the body as application/json, not {content_type or 'no content type'}")
