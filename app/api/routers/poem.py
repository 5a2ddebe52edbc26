"""POST /poem: a classical Chinese poem in a given form, whole or streamed as server-sent events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import APIRouter, Body, Depends, HTTPException
from fastapi.responses import StreamingResponse

from app.adapters.poet import PoemRequestError, Poet
from app.api.dependencies import get_poets, require_json
from app.api.errors import ERRORS
from app.api.json_body import StrictJSONRoute
from app.api.schemas import POEM_EXAMPLES, PoemRequest, PoemResponse
from app.engine.continuous import ContinuousBatcher
from app.engine.errors import DeadlineExceeded

router = APIRouter(tags=["poet"], route_class=StrictJSONRoute)

# The request's fields that say what to write; `stream` only says how to answer.
PLAN_FIELDS = {"form", "prompt", "acrostic", "temperature", "top_k", "seed", "max_chars"}


def _event(name: str, payload: dict) -> dict:
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"const": name},
            "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": payload},
        },
    }


# One event of the stream (OpenAPI before 3.2 has a text/event-stream's schema describe each event).
POEM_EVENT = {
    "oneOf": [
        _event("char", {"type": "object", "required": ["char"], "properties": {"char": {"type": "string"}}}),
        _event("poem", {"$ref": "#/components/schemas/PoemResponse"}),
        _event("error", {"$ref": "#/components/schemas/ErrorResponse"}),
    ]
}


def sse(event: str, data: object) -> str:
    """One server-sent event (text/event-stream): the event's name and its JSON payload."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@router.post(
    "/poem",
    response_model=PoemResponse,
    responses={
        **ERRORS,
        200: {
            "description": "the poem; with `stream: true`, server-sent events instead (text/event-stream): `char` "
            'events, one per character as it is written (`data: {"char": "春"}`), then one `poem` event whose data '
            'is the JSON body above, or an `error` event (`data: {"detail": "..."}`)',
            "content": {
                "text/event-stream": {"schema": POEM_EVENT, "example": 'event: char\ndata: {"char": "春"}\n\n'}
            },
        },
    },
    dependencies=[Depends(require_json)],
    summary="Write a classical Chinese poem in a given form, optionally an acrostic",
)
async def poem(
    request: Annotated[PoemRequest, Body(examples=POEM_EXAMPLES)],
    poets: Annotated[Callable[[str], tuple[ContinuousBatcher[Poet], Poet]], Depends(get_poets)],
) -> PoemResponse | StreamingResponse:
    """Every regular form comes back exactly: its lines and characters per line, `，` and `。` alternating at
    line ends and nowhere else, the acrostic's characters opening the lines. No character pair repeats
    within a poem and no two lines open alike, so greedy decoding neither loops nor repeats a line.
    `model` picks the poet (the LSTM by default); both write under the same rules."""
    poet, model = poets(request.model)
    try:
        plan = model.plan(**request.model_dump(include=PLAN_FIELDS))
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
