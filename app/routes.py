"""HTTP routes. Each validates its input, hands it to a model's inference module, and shapes the answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import JSONResponse

from app.dependencies import get_registry, get_runner, get_settings, get_speller, require_json
from app.inference import InferenceRunner
from app.registry import ModelRegistry
from app.schemas import (
    CorrectRequest,
    CorrectResponse,
    CorrectResult,
    ErrorResponse,
    HealthResponse,
    ModelStatus,
    ReadyResponse,
    TextsRequest,
)
from app.settings import Settings
from app.speller import Speller

router = APIRouter()

ERRORS = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        413: "a text or the body is too long",
        415: "the body is not JSON",
        422: "the body does not match the schema",
        503: "overloaded or not ready; retry after the Retry-After header's seconds",
    }.items()
}


def check_limits(request: TextsRequest, settings: Settings) -> list[str]:
    texts = request.items()
    if len(texts) > settings.max_texts:
        raise HTTPException(413, f"{len(texts)} texts in one request; the limit is {settings.max_texts}")
    for i, text in enumerate(texts):
        if len(text) > settings.max_text_chars:
            raise HTTPException(413, f"text {i} has {len(text)} characters; the limit is {settings.max_text_chars}")
    return texts


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


@router.post(
    "/correct",
    response_model=CorrectResponse,
    responses=ERRORS,
    dependencies=[Depends(require_json)],
    summary="Correct the English misspellings of one or more texts",
)
async def correct(
    request: CorrectRequest,
    speller: Annotated[Speller, Depends(get_speller)],
    runner: Annotated[InferenceRunner, Depends(get_runner)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> CorrectResponse:
    texts = check_limits(request, settings)
    corrected = await runner.run(speller.correct_texts, texts)
    return CorrectResponse(
        results=[CorrectResult(text=r.text, corrections=[vars(c) for c in r.corrections]) for r in corrected]
    )
