"""Liveness, readiness and metrics: what probes and scrapers read, answered even while the service sheds load."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.dependencies import get_metrics, get_registry
from app.api.schemas import HealthResponse, ModelStatus, ReadyResponse
from app.catalog import ModelRegistry
from app.metrics import Metrics

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Prometheus metrics: requests, latency, queue depth, batch sizes, model-call seconds, tokens",
)
async def metrics(metrics: Annotated[Metrics, Depends(get_metrics)]) -> PlainTextResponse:
    return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/health", response_model=HealthResponse, summary="The process is alive")
async def health() -> HealthResponse:
    return HealthResponse()


@router.get(
    "/ready",
    response_model=ReadyResponse,
    responses={503: {"model": ReadyResponse, "description": "models still loading"}},
    summary="Every model is loaded and warmed",
)
async def ready(registry: Annotated[ModelRegistry, Depends(get_registry)]) -> ReadyResponse | JSONResponse:
    body = ReadyResponse(
        status="ready" if registry.ready else "loading",
        models=[ModelStatus(name=m.name, version=m.version, provider=m.provider) for m in registry.models.values()],
    )
    if not registry.ready:
        return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "1"})
    return body
