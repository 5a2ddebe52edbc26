"""What an HTTP worker of `charserve serve --workers N` holds instead of the models: one connection to the engine
process, and per model a `RemoteScheduler` that the routes await as they would the model's own scheduler."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from app.engine.errors import DeadlineExceeded, Overloaded
from app.remote import wire
from app.settings import Settings

# The engine answers a request past its deadline with 504 itself; the worker waits this much longer before it
# gives up on an engine that does not answer at all.
GRACE_S = 1.0


class EngineGone(Overloaded):
    """The engine process has gone (503: the supervisor ends the server and an orchestrator restarts it)."""


@dataclass(eq=False)
class _Call:
    ident: int
    result: asyncio.Future[Any]
    accepted: asyncio.Future[None] | None  # streaming only: the engine took the poem, or refused it
    chars: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)  # then None at the end

    def receive(self, kind: str, rest: list[Any]) -> None:
        if kind == "accepted" and self.accepted is not None:
            self.accepted.set_result(None)
        elif kind == "char":
            self.chars.put_nowait(rest[0])
        elif kind == "result":
            if self.accepted is not None and not self.accepted.done():
                self.accepted.set_result(None)
            if not self.result.done():
                self.result.set_result(rest[0])
            self.chars.put_nowait(None)
        elif kind == "error":
            self.fail(wire.error_of(*rest))

    def fail(self, error: Exception) -> None:
        if self.accepted is not None and not self.accepted.done():
            self.accepted.set_exception(error)  # raised by `stream`, before the response starts
            self.result.cancel()
        elif not self.result.done():
            self.result.set_exception(error)
        self.chars.put_nowait(None)


class EngineClient:
    """One connection to the engine, shared by every request of this worker: a request is one `_Call`,
    answered by the reader task as the engine's messages come."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, models: list[wire.ModelInfo]):
        self.reader, self.writer, self.models = reader, writer, models
        self.calls: dict[int, _Call] = {}
        self.ids = itertools.count(1)
        self.ready = True
        self.reading = asyncio.create_task(self._read(), name="engine-client")

    @classmethod
    async def connect(cls, path: str) -> EngineClient:
        reader, writer = await asyncio.open_unix_connection(path)
        wire.write(writer, ("hello", 0))
        _, _, models = await wire.read(reader)
        return cls(reader, writer, models)

    async def _read(self) -> None:
        try:
            while True:
                kind, ident, *rest = await wire.read(self.reader)
                call = self.calls.get(ident)
                if call is not None:  # None: the request left already
                    call.receive(kind, rest)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.ready = False
            for call in list(self.calls.values()):
                call.fail(EngineGone("the engine process has gone; retry later"))

    def open(self, kind: str, model: str, payload: Any, stream: bool = False) -> _Call:
        if not self.ready:
            raise EngineGone("the engine process has gone; retry later")
        loop = asyncio.get_running_loop()
        call = _Call(next(self.ids), loop.create_future(), loop.create_future() if stream else None)
        self.calls[call.ident] = call
        wire.write(self.writer, (kind, call.ident, model, payload))
        return call

    def finish(self, call: _Call) -> None:
        """The request is done with its call: if the engine has not answered it, its work is cancelled there."""
        self.calls.pop(call.ident, None)
        if not call.result.done():
            call.result.cancel()
            if self.ready:
                wire.write(self.writer, ("cancel", call.ident))

    async def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()
        await asyncio.gather(self.reading, return_exceptions=True)


class RemoteScheduler:
    """The `Scheduler` protocol (app/engine/protocol.py) of one model in the engine process."""

    def __init__(self, client: EngineClient, model: str, deadline_s: float) -> None:
        self.client, self.model, self.wait_s = client, model, deadline_s + GRACE_S

    async def start(self) -> None:
        pass  # the engine runs the model's scheduler

    async def stop(self) -> None:
        await self.client.close()  # every model's requests have drained by now: the connection can go

    async def submit(self, items: Any) -> Any:
        call = self.client.open("submit", self.model, items)
        try:
            return await asyncio.wait_for(asyncio.shield(call.result), self.wait_s)
        except TimeoutError as exc:
            raise DeadlineExceeded(f"the engine did not answer within {self.wait_s:g} s") from exc
        finally:
            self.client.finish(call)

    async def stream(self, plan: Any) -> tuple[AsyncGenerator[str, None], asyncio.Future[Any]]:
        """As ContinuousBatcher.stream: the engine's refusal raises here, before the response starts."""
        call = self.client.open("stream", self.model, plan, stream=True)
        assert call.accepted is not None
        try:
            await asyncio.wait_for(asyncio.shield(call.accepted), self.wait_s)
        except BaseException as exc:
            self.client.finish(call)
            if isinstance(exc, TimeoutError):
                raise DeadlineExceeded(f"the engine did not answer within {self.wait_s:g} s") from exc
            raise
        return self._characters(call), call.result

    async def _characters(self, call: _Call) -> AsyncGenerator[str, None]:
        deadline = time.monotonic() + self.wait_s
        try:
            while True:
                try:
                    text = await asyncio.wait_for(call.chars.get(), max(deadline - time.monotonic(), 0))
                except TimeoutError as exc:
                    raise DeadlineExceeded(f"the engine did not answer within {self.wait_s:g} s") from exc
                if text is None:
                    break
                yield text
            if call.result.done() and not call.result.cancelled() and call.result.exception() is not None:
                raise call.result.exception()  # type: ignore[misc]  # the engine's DeadlineExceeded, mid-poem
        finally:  # the client went away, or the deadline passed: the poem's row leaves the engine's batch
            self.client.finish(call)


@dataclass(frozen=True)
class RemoteModel:
    """A model in the engine, as a route sees it: what /ready shows, the speller's policy, and the poet's plan,
    made by the engine."""

    name: str
    version: str
    provider: str
    policy: Any = None

    def plan(self, **arguments: Any) -> wire.PlanCall:
        return wire.PlanCall(arguments)


class RemoteRegistry:
    """ModelRegistry's face in an HTTP worker: ready while the engine is connected."""

    def __init__(self, client: EngineClient) -> None:
        self.client = client
        self.models = {m.name: RemoteModel(m.name, m.version, m.provider, m.policy) for m in client.models}

    @property
    def ready(self) -> bool:
        return self.client.ready

    @ready.setter
    def ready(self, value: bool) -> None:
        self.client.ready = value


async def connect(settings: Settings) -> tuple[RemoteRegistry, dict[str, RemoteScheduler]]:
    """The engine's models, as this worker's registry and schedulers."""
    client = await EngineClient.connect(settings.engine_address)
    schedulers = {m.name: RemoteScheduler(client, m.name, settings.request_deadline_s) for m in client.models}
    return RemoteRegistry(client), schedulers
