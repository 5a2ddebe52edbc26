"""The engine process of `charserve serve --workers N`: it loads the models, runs one scheduler per model, and
answers the requests of every HTTP worker through them, so that a batch gathers the requests of all workers.

It ignores SIGTERM and SIGINT, which reach every process of the server at once: the HTTP workers drain their
requests first, which needs the engine, and the supervisor (app/serve.py) stops it after them, or it stops on
its own when the supervisor goes away (its control pipe closes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from multiprocessing.connection import Connection
from typing import Any

from app.catalog import ModelRegistry
from app.engine.errors import InvalidInput
from app.engine.protocol import Scheduler
from app.engine.workers import WorkerPool
from app.metrics import Metrics, watch_event_loop
from app.remote import wire
from app.runtime.memory import long_lived_objects_frozen
from app.settings import Settings

log = logging.getLogger("charserve.engine")


class Engine:
    """Answers each connection's messages (app/remote/wire.py), a task per request."""

    def __init__(self, registry: ModelRegistry, schedulers: dict[str, Scheduler]) -> None:
        self.registry, self.schedulers = registry, schedulers
        self.models = [
            wire.ModelInfo(m.name, m.version, m.provider, getattr(m, "policy", None)) for m in registry.models.values()
        ]

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests: dict[int, asyncio.Task[None]] = {}
        try:
            while True:
                kind, ident, *rest = await wire.read(reader)
                if kind == "hello":
                    wire.write(writer, ("hello", ident, self.models))
                elif kind == "cancel":  # the client went away: its rows leave the batch at the next step
                    if ident in requests:
                        requests[ident].cancel()
                else:
                    task = asyncio.create_task(self.answer(writer, kind, ident, *rest))
                    requests[ident] = task
                    task.add_done_callback(lambda _, ident=ident: requests.pop(ident, None))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the worker has gone: so have its requests
        finally:
            for task in list(requests.values()):
                task.cancel()
            writer.close()

    async def answer(self, writer: asyncio.StreamWriter, kind: str, ident: int, model: str, payload: Any) -> None:
        try:
            scheduler = self.schedulers[model]
            payload = self.resolve(model, payload)
            if kind == "submit":
                wire.write(writer, ("result", ident, await scheduler.submit(payload)))
                return
            characters, finished = await scheduler.stream(payload)  # type: ignore[attr-defined]
            wire.write(writer, ("accepted", ident))
            async with contextlib.aclosing(characters):
                async for text in characters:
                    wire.write(writer, ("char", ident, text))
            wire.write(writer, ("result", ident, await finished))
        except Exception as exc:
            why = wire.kind_of(exc)
            if why == "error":
                log.exception("%s request failed", model)
            wire.write(writer, ("error", ident, why, str(exc)))

    def resolve(self, model: str, payload: Any) -> Any:
        """A poem's plan is made here, by the model that writes it; what the planner refuses (a ValueError such as
        the poet's PoemRequestError) is the client's error, as the route answers it in one process."""
        if not isinstance(payload, wire.PlanCall):
            return payload
        try:
            return self.registry.models[model].plan(**payload.arguments)  # type: ignore[attr-defined]
        except ValueError as exc:
            raise InvalidInput(str(exc)) from exc


async def serve(registry: ModelRegistry, settings: Settings, metrics: Metrics, path: str, control: Connection) -> None:
    schedulers = registry.schedulers(settings, WorkerPool(settings.inference_workers), metrics)
    for scheduler in schedulers.values():
        await scheduler.start()
    engine = Engine(registry, schedulers)
    server = await asyncio.start_unix_server(engine.connection, path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(control.fileno(), stop.set)  # the supervisor's word, or its end (the pipe closes)
    watcher = asyncio.create_task(watch_event_loop(metrics), name="event-loop-lag")
    with long_lived_objects_frozen():
        log.info("engine process [%d] ready: %s", os.getpid(), ", ".join(registry.models))
        control.send(("ready", engine.models))
        await stop.wait()
    loop.remove_reader(control.fileno())
    watcher.cancel()
    server.close()
    for scheduler in schedulers.values():
        await scheduler.stop()


def run(settings: Settings, path: str, control: Connection) -> None:
    """The engine process's main: tells the supervisor ("ready", models) or ("failed", why) on `control`."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logging.getLogger("charserve").addHandler(handler)
        logging.getLogger("charserve").setLevel(logging.INFO)
    metrics = Metrics()
    try:
        registry = ModelRegistry.load(settings, metrics)
    except Exception as exc:  # a broken artifact names its file: the supervisor shows it and does not start
        control.send(("failed", str(exc)))
        sys.exit(1)
    asyncio.run(serve(registry, settings, metrics, path, control))
