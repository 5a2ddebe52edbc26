"""The OpenAPI document, completed with what only the settings know: how many texts a request may hold and how
long each may be (past them the server answers 413), the poets served, and the API keys when they are required."""

from __future__ import annotations

from typing import Any, get_args

from fastapi import FastAPI

from app.api.schemas import PoetName
from app.settings import Settings

TEXTS_REQUESTS = ("CorrectRequest", "ClassifyRequest")
POEM_REQUESTS = ("WuyanJueju", "QiyanJueju", "WuyanLushi", "QiyanLushi", "FreePoem")


def document_settings(app: FastAPI, settings: Settings) -> None:
    build = app.openapi  # FastAPI's own, which caches the document in app.openapi_schema

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            for name in TEXTS_REQUESTS:
                properties = document["components"]["schemas"][name]["properties"]
                properties["text"]["maxLength"] = settings.max_text_chars
                properties["texts"]["maxItems"] = settings.max_texts
                properties["texts"]["items"]["maxLength"] = settings.max_text_chars
            served = [poet for poet in get_args(PoetName) if poet in settings.models]
            for name in POEM_REQUESTS:  # only the poets this server serves: another is refused with 422
                if served and name in document["components"]["schemas"]:
                    document["components"]["schemas"][name]["properties"]["model"]["enum"] = served
            if settings.api_keys is not None:
                document["components"]["securitySchemes"] = {
                    "bearer": {"type": "http", "scheme": "bearer"},
                    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                }
                document["security"] = [{"bearer": []}, {"apiKey": []}]
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
