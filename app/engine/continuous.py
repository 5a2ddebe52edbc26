"""Continuous (iteration-level) batching for a step-wise decoder (app/engine/protocol.py): the poet, the speller.

One loop per model runs decoder steps over the live batch. Between two steps, waiting items (poems, words)
join (continuous) and finished ones leave at once, so the batch holds only live rows and a short poem never
waits for a long one. Two baselines for bench/poem_batching.py: `static=True` admits new items only into an
empty batch; `padded=True` as well keeps an ended item's row in every step until the batch's last item ends,
its work thrown away (the textbook static batch, as a padded batch decodes).

As for dynamic batching (app/engine/dynamic.py): a bounded queue (Overloaded → 503), a per-request deadline
(DeadlineExceeded → 504), rows of requests that went away are dropped at the next step, waiting items join in
turns across requests, a joining item whose start or first step raises fails alone, steps run in worker
threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import anyio
import anyio.to_thread
import numpy as np

from app.engine.errors import DeadlineExceeded, Overloaded
from app.engine.isolation import bisect_failures
from app.engine.protocol import StepModel, StreamingModel
from app.engine.workers import Limiter
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


class _Turns:
    """Items waiting to join, kept per request: they join in turns across requests, the least served first (the
    older first among equals), so that a request of thousands of items (a full /correct's unknown words) does
    not hold back the requests that come after it."""

    def __init__(self) -> None:
        self.requests: dict[int, deque[_Job]] = {}  # each request's items not yet joined, in order of arrival
        self.joined: dict[int, int] = {}
        self.count = 0
        self.keys = itertools.count()

    def __len__(self) -> int:
        return self.count

    def add(self, jobs: list[_Job]) -> None:
        key = next(self.keys)
        self.requests[key], self.joined[key] = deque(jobs), 0
        self.count += len(jobs)

    def take(self, room: int) -> list[_Job]:
        """Up to `room` items, one of each request in turn; items whose request went away are dropped."""
        taken: list[_Job] = []
        while len(taken) < room and self.requests:
            for key in sorted(self.requests, key=self.joined.__getitem__):
                waiting = self.requests[key]
                job = waiting.popleft()
                self.count -= 1
                if not job.gone:
                    taken.append(job)
                    self.joined[key] += 1
                if not waiting:
                    del self.requests[key], self.joined[key]
                if len(taken) == room:
                    break
        return taken


ModelT = TypeVar("ModelT", bound=StepModel)


class ContinuousBatcher(Generic[ModelT]):
    def __init__(
        self,
        model: ModelT,
        *,
        max_batch: int,
        max_queue: int,
        deadline_s: float,
        limiter: Limiter,
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
        self.waiting = _Turns()
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
        self.waiting.add(jobs)
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
                joining = self.waiting.take(self.max_batch - len(live))
                self.metrics.queue_depth.labels(self.name).set(len(self.waiting))
            else:
                joining = []
            joining, self.stand_ins = self.stand_ins + joining, []
            if not live and not joining:
                continue
            running = rows if live else None
            try:
                rows, errors, tokens, finished = await anyio.to_thread.run_sync(
                    self._join_and_step, running, [j.plan for j in joining], limiter=self.limiter
                )
            except Exception as exc:  # this step's rows fail; the loop goes on with new requests
                log.exception("%s step over %d items failed", self.name, len(live) + len(joining))
                self._fail(live + joining, exc)
                rows, live = None, []
                continue
            for job, error in zip(joining, errors, strict=True):
                if error is not None:
                    log.error("%s: an item failed to join the batch", self.name, exc_info=error)
                    self._fail([job], error)
            live += [job for job, error in zip(joining, errors, strict=True) if error is None]
            if not live:
                rows = None
                continue
            rows, live = self._advance(rows, live, tokens, finished)

    @staticmethod
    def _fail(jobs: list[_Job], error: Exception) -> None:
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(error)
            if job.stream is not None:
                job.stream.put_nowait(None)

    def _join_and_step(self, rows: Any, plans: list[Any]) -> tuple[Any, list[Exception | None], np.ndarray, np.ndarray]:
        """In a worker thread: start the joining items (the speller encodes them here), then step them all.
        Returns the batch, each joining item's error (None: it joined), the step's tokens and finished items.

        A joining item that fails stays out and fails alone: one whose start raises (found by starting the
        joining items again in halves), or, when a step with joining items raises, one that raises in a trial
        step of its own. A step that raised left the running rows as they were (joining copies them), so it runs
        again without the culprits. A step without joining items that raises fails the whole batch: its rows
        may be half updated."""
        started = time.perf_counter()
        errors: list[Exception | None] = [None] * len(plans)
        new = self._start(plans, errors)
        try:
            batch, tokens, finished = self._step(rows, new)
        except Exception:
            if new is None:
                raise
            log.warning("%s: a step with %d joining items raised; stepping them alone", self.name, len(new))
            joined = [i for i, error in enumerate(errors) if error is None]
            for part, outcome in bisect_failures(lambda part: self._step(None, self._rows(plans, part)), joined):
                if isinstance(outcome, Exception):
                    errors[part[0]] = outcome
            batch, tokens, finished = self._step(rows, self._start(plans, errors))
        self.metrics.call_seconds.labels(self.name).observe(time.perf_counter() - started)
        return batch, errors, tokens, finished

    def _rows(self, plans: list[Any], which: list[int]) -> Any:
        return self.model.rows([plans[i] for i in which])

    def _start(self, plans: list[Any], errors: list[Exception | None]) -> Any:
        """The new rows of the plans whose error is None (None: no rows); a plan whose start raises gets its
        error."""
        ready = [i for i, error in enumerate(errors) if error is None]
        parts = []
        for part, outcome in bisect_failures(lambda part: self._rows(plans, part), ready) if ready else []:
            if isinstance(outcome, Exception):
                errors[part[0]] = outcome
            else:
                parts.append(outcome)
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else type(parts[0]).concat(parts)

    def _step(self, rows: Any, new: Any) -> tuple[Any, np.ndarray, np.ndarray]:
        """One step of the running rows and the new ones joined after them."""
        batch = new if rows is None else rows if new is None else type(rows).concat([rows, new])
        if batch is None:
            return None, np.empty(0, dtype=np.int64), np.empty(0, dtype=bool)
        tokens, finished = self.model.step(batch)
        return batch, tokens, finished

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
