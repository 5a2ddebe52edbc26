"""POST /classify: an entity's type from its name."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from app.api.dependencies import get_classifier, get_settings, require_json
from app.api.errors import ERRORS
from app.api.json_body import StrictJSONRoute
from app.api.limits import check_limits
from app.api.schemas import ClassifyRequest, ClassifyResponse, ClassifyResult
from app.engine.protocol import Scheduler
from app.settings import Settings

router = APIRouter(tags=["classifier"], route_class=StrictJSONRoute)


@router.post(
    "/classify",
    response_model=ClassifyResponse,
    responses=ERRORS,
    dependencies=[Depends(require_json)],
    summary="Tell the type of one or more entity names: Person, Place, Organisation, Work or Species",
)
async def classify(
    request: ClassifyRequest,
    classifier: Annotated[Scheduler, Depends(get_classifier)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> ClassifyResponse:
    """Names may use spaces or underscores and may be percent-encoded (`%C5%BDeljko_Ivanek`)."""
    texts = check_limits(request, settings)
    found = await classifier.submit(texts)
    return ClassifyResponse(results=[ClassifyResult(label=c.label, scores=c.scores) for c in found])
