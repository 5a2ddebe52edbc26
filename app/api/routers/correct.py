"""POST /correct: English misspellings corrected, each correction with its place in the text."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Depends

from app.adapters.speller.model import Speller
from app.api.dependencies import get_settings, get_speller, get_speller_model, require_json
from app.api.errors import ERRORS
from app.api.json_body import StrictJSONRoute
from app.api.limits import check_limits
from app.api.schemas import CorrectRequest, CorrectResponse, CorrectResult
from app.engine.protocol import Scheduler
from app.settings import Settings

router = APIRouter(tags=["speller"], route_class=StrictJSONRoute)


@router.post(
    "/correct",
    response_model=CorrectResponse,
    responses=ERRORS,
    dependencies=[Depends(require_json)],
    summary="Correct the English misspellings of one or more texts",
)
async def correct(
    request: CorrectRequest,
    speller: Annotated[Scheduler, Depends(get_speller)],
    settings: Annotated[Settings, Depends(get_settings)],
    model: Annotated[Speller, Depends(get_speller_model)],
) -> CorrectResponse:
    texts = check_limits(request, settings)
    # The batch decodes every request's words alike; what to apply is this request's own decision. Its own
    # min_confidence holds for every word; without one, the server's thresholds (per context where tuned).
    ignore_words = frozenset(w.lower() for w in request.ignore_words)
    policy = replace(model.policy, flag_uncertain=request.flag_uncertain, ignore_words=ignore_words)
    if request.min_confidence is not None:
        policy = policy.everywhere(request.min_confidence)
    reviewed = await speller.submit(texts)
    return CorrectResponse(results=[CorrectResult.model_validate(policy.decide(r)) for r in reviewed])
