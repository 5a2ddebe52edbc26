"""Continuous (iteration-level) batching for a step-wise decoder (app/engine/protocol.py): the poet, the speller.

One loop per model runs decoder steps over the live batch. Between two steps, waiting items (poems, words)
join (continuous) and finished ones leave at once, so the batch holds only live rows and a short poem never
waits for a long one. Two baselines for bench/poem_batching.py: `static=True` admits new items only into an
empty batch; `padded=True` as well keeps an ended item's row in every step until the batch's last item ends,
its work thrown away (the textbook static batch, as a padded batch decodes).

As for dynamic batching (app/engine/dynamic.py): a bounded queue (Overloaded → 503), a per-request deadline
(DeadlineExceeded → 504), rows of requests that went away are dropped at the next step, a step that raises
fails only the rows it ran, steps run in worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import anyio
import anyio.to_thread
import numpy as np

from app.engine.errors import DeadlineExceeded, Overloaded
from app.engine.protocol import StepModel, StreamingModel
from app.metrics import Metrics

log = logging.getLogger("charserve.continuous")


@dataclass
class _Job:
    plan: Any
    future: asyncio.Future[Any]
    stream: asyncio.Queue[str | None] | None  # characters as written, then None; only for streaming requests
    enqueued: float = field(default_factory=time.perf_counter)

    @property
    def gone(self) -> bool:
        return self.future.done()


ModelT = TypeVar("ModelT", bound=StepModel)


class ContinuousBatcher(Generic[ModelT]):
    def __init__(
        self,
        model: ModelT,
        *,
        max_batch: int,
        max_queue: int,
        deadline_s: float,
        limiter: anyio.CapacityLimiter,
        metrics: Metrics | None = None,
        static: bool = False,
        padded: bool = False,
        join_fraction: float = 0.0,
    ) -> None:
        self.model, self.name = model, model.name
        self.text_of = model.text_of if isinstance(model, StreamingModel) else None
        self.max_batch, self.max_queue, self.deadline_s = max_batch, max_queue, deadline_s
        self.static, self.padded = static or padded, padded
        # Items join a running batch only once at least this fraction of its live items wait: each join copies
        # the whole batch (the speller's words carry their encoder outputs), so joining at every step can cost
        # more than it buys. 0: join at every step.
        self.join_fraction = join_fraction
        self.limiter = limiter
        self.metrics = metrics or Metrics()
        self.waiting: list[_Job] = []
        self.stand_ins: list[_Job] = []  # padded: ended items whose rows go on, joining at the next step
        self.wake = asyncio.Event()
        self.loop_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.loop_task = asyncio.create_task(self._loop(), name=f"continuous-{self.name}")

    async def stop(self) -> None:
        if self.loop_task:
            self.loop_task.cancel()
            await asyncio.gather(self.loop_task, return_exceptions=True)

    def _enqueue(self, plans: list[Any], stream: bool) -> list[_Job]:
        """Queue one request's items together. A request is refused only if the queue is already full when it
        comes, so one with more items than the limit still gets in when the queue is short."""
        if self.loop_task is None:
            raise RuntimeError(f"the {self.name} batcher is not started")
        if len(self.waiting) >= self.max_queue:
            self.metrics.rejected.labels(self.name).inc()
            raise Overloaded(f"{len(self.waiting)} items already waiting (limit {self.max_queue})")
        loop = asyncio.get_running_loop()
        jobs = [_Job(plan, loop.create_future(), asyncio.Queue() if stream else None) for plan in plans]
        self.waiting += jobs
        self.metrics.queue_depth.labels(self.name).set(len(self.waiting))
        self.wake.set()
        return jobs

    async def submit(self, plan: Any) -> Any:
        return (await self.submit_many([plan]))[0]

    async def submit_many(self, plans: list[Any]) -> list[Any]:
        """The results of one request's items, decoded wherever each joins the running batch."""
        if not plans:
            return []
        jobs = self._enqueue(plans, stream=False)
        try:
            return await asyncio.wait_for(asyncio.gather(*(asyncio.shield(j.future) for j in jobs)), self.deadline_s)
        except TimeoutError as exc:
            raise DeadlineExceeded(f"not answered within {self.deadline_s:g} s") from exc
        finally:
            for job in jobs:
                if not job.future.done():
                    job.future.cancel()  # its rows leave the batch at the next step
                elif not job.future.cancelled():
                    job.future.exception()  # a failed sibling raised already: this one's error is seen too

    async def stream(self, plan: Any) -> tuple[AsyncGenerator[str, None], asyncio.Future[Any]]:
        """Tokens as they are written, and the finished result. Queue-full errors raise here, before the
        response starts; the iterator raises DeadlineExceeded if the item outlasts its deadline."""
        if self.text_of is None:
            raise TypeError(f"{self.name} does not stream")
        [job] = self._enqueue([plan], stream=True)
        assert job.stream is not None
        queue = job.stream

        async def characters() -> AsyncGenerator[str, None]:
            deadline = job.enqueued + self.deadline_s
            try:
                while True:
                    try:
                        ch = await asyncio.wait_for(queue.get(), max(deadline - time.perf_counter(), 0))
                    except TimeoutError as exc:
                        raise DeadlineExceeded(f"not answered within {self.deadline_s:g} s") from exc
                    if ch is None:
                        return
                    yield ch
            finally:  # the client went away, or the deadline passed: drop the row
                if not job.future.done():
                    job.future.cancel()

        return characters(), job.future

    async def _loop(self) -> None:
        rows: Any = None
        live: list[_Job] = []
        while True:
            if not live and not self.waiting:
                self.wake.clear()
                await self.wake.wait()
            joins = not live or (not self.static and len(self.waiting) >= self.join_fraction * len(live))
            if self.waiting and joins:
                joining = [j for j in self.waiting[: self.max_batch - len(live)] if not j.gone]
                del self.waiting[: self.max_batch - len(live)]
                self.metrics.queue_depth.labels(self.name).set(len(self.waiting))
            else:
                joining = []
            joining, self.stand_ins = self.stand_ins + joining, []
            if not live and not joining:
                continue
            running = rows if live else None
            live += joining
            try:
                rows, tokens, finished = await anyio.to_thread.run_sync(
                    self._join_and_step, running, [j.plan for j in joining], limiter=self.limiter
                )
            except Exception as exc:  # this step's rows fail; the loop goes on with new requests
                log.exception("%s step over %d items failed", self.name, len(live))
                for job in live:
                    if not job.future.done():
                        job.future.set_exception(exc)
                    if job.stream is not None:
                        job.stream.put_nowait(None)
                rows, live = None, []
                continue
            rows, live = self._advance(rows, live, tokens, finished)

    def _join_and_step(self, rows: Any, plans: list[Any]) -> tuple[Any, np.ndarray, np.ndarray]:
        """In a worker thread: start the joining items (the speller encodes them here), then step them all."""
        started = time.perf_counter()
        if plans:
            new = self.model.rows(plans)
            rows = new if rows is None else type(rows).concat([rows, new])
        tokens, finished = self.model.step(rows)
        self.metrics.call_seconds.labels(self.name).observe(time.perf_counter() - started)
        return rows, tokens, finished

    def _advance(self, rows: Any, live: list[_Job], tokens: np.ndarray, finished: np.ndarray) -> tuple[Any, list[_Job]]:
        """Hand out this step's tokens, answer finished items, drop rows nobody waits for."""
        for i, job in enumerate(live):
            if job.stream is not None and not job.gone and self.text_of is not None:
                text = self.text_of(int(tokens[i]))
                if text is not None:
                    job.stream.put_nowait(text)
        if finished.any():
            done = [live[i] for i in np.flatnonzero(finished)]
            for job, result in zip(done, self.model.answers(rows, finished, [j.plan for j in done]), strict=True):
                if not job.gone:
                    job.future.set_result(result)
                if job.stream is not None:
                    job.stream.put_nowait(None)
        keep = ~finished & ~np.array([job.gone for job in live])
        if self.padded and keep.any():
            # An ended item's row goes on being computed until the batch's last item ends: a fresh row of the
            # same plan joins at the next step in its place (its job already answered, its output never read).
            self.stand_ins = [job for job, f in zip(live, finished, strict=True) if f]
            keep = ~finished
        if keep.all():
            return rows, live
        return rows.take(keep), [job for job, k in zip(live, keep, strict=True) if k]
