"""Continuous (iteration-level) batching for a step-wise decoder: the poet.

One loop per model runs decoder steps over the live batch. Between two steps, waiting requests join
(continuous) and finished poems leave at once, so the batch holds only live rows and a short poem never
waits for a long one. `static=True` admits new requests only into an empty batch: the baseline that
bench/poem_batching.py measures against.

As for dynamic batching (app/batching.py): a bounded queue (Overloaded → 503), a per-request deadline
(DeadlineExceeded → 504), rows of requests that went away are dropped at the next step, a step that raises
fails only the rows it ran, steps run in worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

import anyio
import anyio.to_thread
import numpy as np

from app.batching import DeadlineExceeded, Overloaded
from app.metrics import Metrics
from app.poet import Plan, Poem, PoemRows, Poet

log = logging.getLogger("charserve.continuous")


@dataclass
class _Job:
    plan: Plan
    future: asyncio.Future[Poem]
    stream: asyncio.Queue[str | None] | None  # characters as written, then None; only for streaming requests
    enqueued: float = field(default_factory=time.perf_counter)

    @property
    def gone(self) -> bool:
        return self.future.done()


class ContinuousBatcher:
    def __init__(
        self,
        poet: Poet,
        *,
        max_batch: int,
        max_queue: int,
        deadline_s: float,
        limiter: anyio.CapacityLimiter,
        metrics: Metrics | None = None,
        static: bool = False,
    ) -> None:
        self.poet, self.name = poet, poet.name
        self.max_batch, self.max_queue, self.deadline_s, self.static = max_batch, max_queue, deadline_s, static
        self.limiter = limiter
        self.metrics = metrics or Metrics()
        self.waiting: list[_Job] = []
        self.wake = asyncio.Event()
        self.loop_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.loop_task = asyncio.create_task(self._loop(), name=f"continuous-{self.name}")

    async def stop(self) -> None:
        if self.loop_task:
            self.loop_task.cancel()
            await asyncio.gather(self.loop_task, return_exceptions=True)

    def _enqueue(self, plan: Plan, stream: bool) -> _Job:
        if self.loop_task is None:
            raise RuntimeError(f"the {self.name} batcher is not started")
        if len(self.waiting) >= self.max_queue:
            self.metrics.rejected.labels(self.name).inc()
            raise Overloaded(f"{len(self.waiting)} poems already waiting (limit {self.max_queue})")
        job = _Job(plan, asyncio.get_running_loop().create_future(), asyncio.Queue() if stream else None)
        self.waiting.append(job)
        self.metrics.queue_depth.labels(self.name).set(len(self.waiting))
        self.wake.set()
        return job

    async def submit(self, plan: Plan) -> Poem:
        job = self._enqueue(plan, stream=False)
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), self.deadline_s)
        except TimeoutError as exc:
            raise DeadlineExceeded(f"no poem within {self.deadline_s:g} s") from exc
        finally:
            if not job.future.done():
                job.future.cancel()  # its row leaves the batch at the next step

    async def stream(self, plan: Plan) -> tuple[AsyncGenerator[str, None], asyncio.Future[Poem]]:
        """Characters as they are written, and the finished poem. Queue-full errors raise here, before the
        response starts; the iterator raises DeadlineExceeded if the poem outlasts its deadline."""
        job = self._enqueue(plan, stream=True)
        assert job.stream is not None
        queue = job.stream

        async def characters() -> AsyncGenerator[str, None]:
            deadline = job.enqueued + self.deadline_s
            try:
                while True:
                    try:
                        ch = await asyncio.wait_for(queue.get(), max(deadline - time.perf_counter(), 0))
                    except TimeoutError as exc:
                        raise DeadlineExceeded(f"no poem within {self.deadline_s:g} s") from exc
                    if ch is None:
                        return
                    yield ch
            finally:  # the client went away, or the deadline passed: drop the row
                if not job.future.done():
                    job.future.cancel()

        return characters(), job.future

    async def _loop(self) -> None:
        rows: PoemRows | None = None
        live: list[_Job] = []
        while True:
            if not live and not self.waiting:
                self.wake.clear()
                await self.wake.wait()
            if self.waiting and (not self.static or not live):
                joining = [j for j in self.waiting[: self.max_batch - len(live)] if not j.gone]
                del self.waiting[: self.max_batch - len(live)]
                self.metrics.queue_depth.labels(self.name).set(len(self.waiting))
                if joining:
                    new = self.poet.rows([j.plan for j in joining])
                    rows = new if rows is None or not live else PoemRows.concat([rows, new])
                    live += joining
            if not live:
                continue
            assert rows is not None
            try:
                tokens, finished = await anyio.to_thread.run_sync(self.poet.step, rows, limiter=self.limiter)
            except Exception as exc:  # this step's rows fail; the loop goes on with new requests
                log.exception("%s step over %d rows failed", self.name, len(live))
                for job in live:
                    if not job.future.done():
                        job.future.set_exception(exc)
                    if job.stream is not None:
                        job.stream.put_nowait(None)
                rows, live = None, []
                continue
            rows, live = self._advance(rows, live, tokens, finished)

    def _advance(
        self, rows: PoemRows, live: list[_Job], tokens: np.ndarray, finished: np.ndarray
    ) -> tuple[PoemRows, list[_Job]]:
        """Hand out this step's characters, answer finished poems, drop rows nobody waits for."""
        for i, job in enumerate(live):
            if job.stream is not None and not job.gone and tokens[i] != self.poet.eos:
                job.stream.put_nowait(str(self.poet.vocab[tokens[i]]))
        for i in np.nonzero(finished)[0]:
            job = live[i]
            if not job.gone:
                job.future.set_result(self.poet.poem(rows, int(i), job.plan))
            if job.stream is not None:
                job.stream.put_nowait(None)
        keep = ~finished & ~np.array([job.gone for job in live])
        if keep.all():
            return rows, live
        return rows.take(keep), [job for job, k in zip(live, keep, strict=True) if k]
