"""The limits on a request's texts that the settings set (the schema cannot know them)."""

from __future__ import annotations

from fastapi import HTTPException

from app.api.schemas import TextsRequest
from app.settings import Settings


def check_limits(request: TextsRequest, settings: Settings) -> list[str]:
    """The request's texts, or 413 naming the first limit passed."""
    texts = request.items()
    if len(texts) > settings.max_texts:
        raise HTTPException(413, f"{len(texts)} texts in one request; the limit is {settings.max_texts}")
    for i, text in enumerate(texts):
        if len(text) > settings.max_text_chars:
            raise HTTPException(413, f"text {i} has {len(text)} characters; the limit is {settings.max_text_chars}")
    return texts
