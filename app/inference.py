"""Runs model calls off the event loop, with a bound on how many may wait: overload is refused, not queued."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")


class Overloaded(Exception):
    """More requests are in flight than the service admits; the client should retry later."""


class InferenceRunner:
    def __init__(self, workers: int, max_pending: int) -> None:
        self.limiter = anyio.CapacityLimiter(workers)
        self.max_pending = max_pending
        self.pending = 0

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        if self.pending >= self.max_pending:
            raise Overloaded(f"{self.pending} requests already in flight (limit {self.max_pending})")
        self.pending += 1
        try:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self.limiter)
        finally:
            self.pending -= 1
