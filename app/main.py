"""The ASGI app: `uvicorn app.main:app`. Models load and warm up in the lifespan, before traffic."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from app.admission import ConcurrencyLimitMiddleware
from app.batching import DeadlineExceeded, DynamicBatcher, Overloaded
from app.continuous import ContinuousBatcher, ContinuousSpeller
from app.metrics import Metrics, MetricsMiddleware, watch_event_loop
from app.poet import Poet
from app.registry import ModelRegistry, ServedModel
from app.routes import router
from app.settings import Settings
from app.speller import Speller

log = logging.getLogger("charserve")
YOUNG_COLLECTION_THRESHOLD = 10_000  # Python's default is 700 (see the lifespan)


def configure_logging(access_log: bool) -> None:
    """Plain lines on stderr for charserve's loggers; uvicorn configures its own."""
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    logging.getLogger("charserve.access").disabled = not access_log


def make_scheduler(
    name: str, model: ServedModel, settings: Settings, workers: anyio.CapacityLimiter, metrics: Metrics
) -> DynamicBatcher | ContinuousBatcher | ContinuousSpeller:
    """The poet batches continuously, and the speller when set so (on a CPU core whole requests measured
    faster, docs/design.md); the others gather the texts of concurrent requests into one call."""
    continuous = partial(ContinuousBatcher, deadline_s=settings.request_deadline_s, limiter=workers, metrics=metrics)
    if isinstance(model, Speller) and settings.speller_scheduling == "continuous" and settings.batch_max_texts > 1:
        words = continuous(
            model,
            max_batch=settings.speller_max_batch_words,
            max_queue=settings.speller_max_queue_words,
            join_fraction=settings.speller_join_fraction,
        )
        return ContinuousSpeller(model, words)
    if isinstance(model, Poet):
        return continuous(
            model,
            max_batch=settings.poet_max_batch,
            max_queue=settings.poet_max_queue,
            static=settings.poet_scheduling == "static",
            padded=settings.poet_scheduling == "static_padded",
        )
    return DynamicBatcher(
        name,
        model.batch,  # every model but the poet answers whole texts
        max_batch=settings.batch_max_texts,
        max_wait_s=settings.batch_max_wait_ms / 1000,
        max_queue=settings.max_queue_texts,
        deadline_s=settings.request_deadline_s,
        limiter=workers,
        metrics=metrics,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.access_log)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A broken artifact raises here, naming the file, and uvicorn refuses to start.
        registry = await anyio.to_thread.run_sync(partial(ModelRegistry.load, settings, metrics))
        workers = anyio.CapacityLimiter(settings.inference_workers)  # shared: the cores are too
        batchers = {
            name: make_scheduler(name, model, settings, workers, metrics) for name, model in registry.models.items()
        }
        for batcher in batchers.values():
            await batcher.start()
        app.state.registry, app.state.batchers = registry, batchers
        # The models' dictionaries, tries and vocabularies are long-lived objects by the million: every full
        # collection walked them all, pausing the server for 205-232 ms under load. Frozen after start-up, they
        # are left out, and a full collection walks only what requests made: 2-4 ms (python -m bench.gc_pauses).
        gc.collect()
        gc.freeze()
        # Python collects its youngest objects each time 700 more are alive than at the last collection. The
        # objects of 64 requests in flight pass that every few requests, and each collection walks them all:
        # 17 µs a request at 64 concurrent (one every 6 requests). Raised, they run only when garbage piles up
        # (python -m bench.gc_pauses).
        thresholds = gc.get_threshold()
        gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *thresholds[1:])
        watcher = asyncio.create_task(watch_event_loop(metrics), name="event-loop-lag")
        yield
        watcher.cancel()
        gc.set_threshold(*thresholds)
        gc.unfreeze()  # another app in this process (the tests) must not keep this one's objects frozen
        # uvicorn has drained the in-flight requests by now (SIGTERM: stop accepting, finish, then this).
        registry.ready = False
        for batcher in batchers.values():
            await batcher.stop()

    app = FastAPI(
        title="charserve",
        summary="Character-level neural text models on ONNX Runtime",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.registry = ModelRegistry()
    app.state.batchers = {}
    app.include_router(router)
    # The last added is outermost: metrics see every request, refusals included; the limit refuses before routing.
    app.add_middleware(ConcurrencyLimitMiddleware, limit=settings.max_concurrent_requests, metrics=metrics)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.exception_handler(Overloaded)
    async def overloaded(_: Request, exc: Overloaded) -> JSONResponse:
        return JSONResponse({"detail": f"overloaded: {exc}"}, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(DeadlineExceeded)
    async def deadline(_: Request, exc: DeadlineExceeded) -> JSONResponse:
        return JSONResponse({"detail": f"deadline exceeded: {exc}"}, status_code=504)

    return app


app = create_app()
