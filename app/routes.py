"""HTTP routes. Each validates its input, hands it to a model's inference module, and shapes the answer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.batching import DeadlineExceeded, DynamicBatcher
from app.continuous import ContinuousBatcher, ContinuousSpeller
from app.dependencies import (
    get_classifier,
    get_metrics,
    get_poet,
    get_registry,
    get_settings,
    get_speller,
    get_speller_policy,
    require_json,
)
from app.metrics import Metrics
from app.poet import PoemRequestError, Poet
from app.registry import ModelRegistry
from app.schemas import (
    ClassifyRequest,
    ClassifyResponse,
    ClassifyResult,
    CorrectRequest,
    CorrectResponse,
    CorrectResult,
    ErrorResponse,
    HealthResponse,
    ModelStatus,
    PoemRequest,
    PoemResponse,
    ReadyResponse,
    TextsRequest,
)
from app.settings import Settings
from app.speller_decision import Policy

router = APIRouter()

ERRORS = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        413: "a text or the body is too long",
        415: "the body is not JSON",
        422: "the body does not match the schema",
        503: "overloaded or not ready; retry after the Retry-After header's seconds",
        504: "the request's model work outlasted its deadline",
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


@router.post(
    "/correct",
    response_model=CorrectResponse,
    responses=ERRORS,
    dependencies=[Depends(require_json)],
    summary="Correct the English misspellings of one or more texts",
)
async def correct(
    request: CorrectRequest,
    speller: Annotated[DynamicBatcher | ContinuousSpeller, Depends(get_speller)],
    settings: Annotated[Settings, Depends(get_settings)],
    policy: Annotated[Policy, Depends(get_speller_policy)],
) -> CorrectResponse:
    texts = check_limits(request, settings)
    corrected = [policy.decide(reviewed) for reviewed in await speller.submit(texts)]
    return CorrectResponse(
        results=[CorrectResult(text=r.text, corrections=[vars(c) for c in r.corrections]) for r in corrected]
    )


@router.post(
    "/classify",
    response_model=ClassifyResponse,
    responses=ERRORS,
    dependencies=[Depends(require_json)],
    summary="Tell the type of one or more entity names: Person, Place, Organisation, Work or Species",
)
async def classify(
    request: ClassifyRequest,
    classifier: Annotated[DynamicBatcher, Depends(get_classifier)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> ClassifyResponse:
    """Names may use spaces or underscores and may be percent-encoded (`%C5%BDeljko_Ivanek`)."""
    texts = check_limits(request, settings)
    found = await classifier.submit(texts)
    return ClassifyResponse(results=[ClassifyResult(label=c.label, scores=c.scores) for c in found])


def sse(event: str, data: object) -> str:
    """One server-sent event (text/event-stream): the event's name and its JSON payload."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@router.post(
    "/poem",
    response_model=PoemResponse,
    responses={
        **ERRORS,
        200: {
            "description": "the poem; with `stream: true`, server-sent events instead: `char` events, one per "
            "character as it is written, then one `poem` event with this body (or an `error` event)",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
    },
    dependencies=[Depends(require_json)],
    summary="Write a classical Chinese poem in a given form, optionally an acrostic",
)
async def poem(
    request: PoemRequest, poet: Annotated[ContinuousBatcher[Poet], Depends(get_poet)]
) -> PoemResponse | StreamingResponse:
    """Every regular form comes back exactly: its lines and characters per line, `，` and `。` alternating at
    line ends and nowhere else, the acrostic's characters opening the lines. No character pair repeats
    within a poem and no two lines open alike, so greedy decoding neither loops nor repeats a line."""
    try:
        plan = poet.model.plan(
            request.form, request.prompt, request.acrostic, request.temperature, request.top_k, request.seed,
            request.max_chars,
        )  # fmt: skip
    except PoemRequestError as exc:
        raise HTTPException(422, str(exc)) from exc
    if not request.stream:
        written = await poet.submit(plan)
        return PoemResponse(poem=written.poem, lines=written.lines, form=written.form, seed=written.seed)

    characters, finished = await poet.stream(plan)  # a full queue raises here: 503 before the stream starts

    async def events() -> AsyncIterator[str]:
        try:
            async for ch in characters:
                yield sse("char", {"char": ch})
            written = await finished
            body = PoemResponse(poem=written.poem, lines=written.lines, form=written.form, seed=written.seed)
            yield sse("poem", body.model_dump())
        except DeadlineExceeded as exc:
            yield sse("error", {"detail": f"deadline exceeded: {exc}"})

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
