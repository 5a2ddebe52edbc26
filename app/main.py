"""The ASGI app: `uvicorn app.main:app`. Models load and warm up in the lifespan, before traffic."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from app.inference import InferenceRunner, Overloaded
from app.registry import ModelRegistry
from app.routes import router
from app.settings import Settings

log = logging.getLogger("charserve")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A broken artifact raises here, naming the file, and uvicorn refuses to start.
        app.state.registry = await anyio.to_thread.run_sync(ModelRegistry.load, settings)
        yield
        app.state.registry.ready = False

    app = FastAPI(
        title="charserve",
        summary="Character-level neural text models on ONNX Runtime",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.registry = ModelRegistry()
    app.state.runner = InferenceRunner(settings.inference_workers, settings.max_pending)
    app.include_router(router)

    @app.exception_handler(Overloaded)
    async def overloaded(_: Request, exc: Overloaded) -> JSONResponse:
        return JSONResponse({"detail": f"overloaded: {exc}"}, status_code=503, headers={"Retry-After": "1"})

    return app


app = create_app()
