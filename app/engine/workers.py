"""The inference workers every model's scheduler shares (a model call or decoding step each, in a worker thread).

A worker that frees goes to the waiting model that holds the fewest workers, the one that asked first among
equals: a model with a backlog (the speller's pieces of two full requests) takes every worker while it is alone,
yet another model's request waits only for the first worker to free, never behind the backlog's next pieces.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

import anyio


@dataclass(eq=False)
class _Waiter:
    model: str
    granted: asyncio.Future[None]


class WorkerPool:
    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.busy: Counter[str] = Counter()  # workers each model holds
        self.waiting: list[_Waiter] = []  # in order of asking

    def share(self, model: str) -> ModelWorkers:
        return ModelWorkers(self, model)

    async def acquire(self, model: str) -> None:
        if not self.waiting and self.busy.total() < self.workers:
            self.busy[model] += 1
            return
        waiter = _Waiter(model, asyncio.get_running_loop().create_future())
        self.waiting.append(waiter)
        try:
            await waiter.granted
        except BaseException:  # cancelled while waiting, or just as it was granted
            if waiter.granted.done() and not waiter.granted.cancelled():
                self.release(model)
            else:
                self.waiting.remove(waiter)
            raise

    def release(self, model: str) -> None:
        self.busy[model] -= 1
        while self.waiting and self.busy.total() < self.workers:
            waiter = min(self.waiting, key=lambda w: self.busy[w.model])  # the first of the fewest held
            self.waiting.remove(waiter)
            self.busy[waiter.model] += 1
            waiter.granted.set_result(None)


class ModelWorkers:
    """One model's hold on the pool, used as anyio's CapacityLimiter is: by the schedulers, and by
    anyio.to_thread.run_sync (`async with`)."""

    def __init__(self, pool: WorkerPool, model: str) -> None:
        self.pool, self.model = pool, model

    async def acquire_on_behalf_of(self, borrower: object) -> None:
        await self.pool.acquire(self.model)

    def release_on_behalf_of(self, borrower: object) -> None:
        self.pool.release(self.model)

    async def __aenter__(self) -> None:
        await self.pool.acquire(self.model)

    async def __aexit__(self, *exc: Any) -> None:
        self.pool.release(self.model)


Limiter = anyio.CapacityLimiter | ModelWorkers  # what a scheduler's model calls wait for
