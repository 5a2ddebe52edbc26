"""The ASGI app: `uvicorn app.main:app`. Models load and warm up in the lifespan, before traffic."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import anyio.to_thread
from fastapi import FastAPI

from app.api.errors import add_error_handlers
from app.api.guards import add_middlewares
from app.api.openapi import document_settings
from app.api.routers import classify, correct, health, poem
from app.api.routers.pages import add_pages
from app.catalog import ModelRegistry
from app.engine.workers import WorkerPool
from app.metrics import Metrics, watch_event_loop
from app.remote import client as remote
from app.runtime.memory import long_lived_objects_frozen
from app.settings import Settings

log = logging.getLogger("charserve")


def configure_logging(access_log: bool) -> None:
    """Plain lines on stderr for charserve's loggers; uvicorn configures its own."""
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    logging.getLogger("charserve.access").disabled = not access_log


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.access_log)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.engine_address:  # an HTTP worker of `charserve serve --workers N`: the models are the engine's
            registry, schedulers = await remote.connect(settings)
        elif settings.workers > 1:
            raise RuntimeError("CHARSERVE_WORKERS above 1 needs `charserve serve`, which starts the engine process")
        else:
            # A broken artifact raises here, naming the file, and uvicorn refuses to start.
            registry = await anyio.to_thread.run_sync(partial(ModelRegistry.load, settings, metrics))
            workers = WorkerPool(settings.inference_workers)  # shared: the cores are too
            schedulers = registry.schedulers(settings, workers, metrics)
        for scheduler in schedulers.values():
            await scheduler.start()
        app.state.registry, app.state.schedulers = registry, schedulers
        with long_lived_objects_frozen():
            watcher = asyncio.create_task(watch_event_loop(metrics), name="event-loop-lag")
            yield
            watcher.cancel()
        # uvicorn has drained the in-flight requests by now (SIGTERM: stop accepting, finish, then this).
        registry.ready = False
        for scheduler in schedulers.values():
            await scheduler.stop()

    app = FastAPI(
        title="charserve",
        summary="Character-level neural text models on ONNX Runtime",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served by app/api/routers/pages.py from local files, not a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.registry = ModelRegistry()
    app.state.schedulers = {}
    for router in (health.router, correct.router, classify.router, poem.router):
        app.include_router(router)
    add_pages(app)
    add_error_handlers(app)
    add_middlewares(app, settings, metrics)
    document_settings(app, settings)

    return app


app = create_app()
