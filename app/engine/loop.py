"""What every scheduler does around its own loop: start it as one asyncio task, stop it by cancelling."""

from __future__ import annotations

import asyncio


class SchedulerLoop:
    """A scheduler's one asyncio task running `_loop`; `kind` names the task (`batcher-speller`, say)."""

    name: str
    kind: str
    loop_task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        self.loop_task = asyncio.create_task(self._loop(), name=f"{self.kind}-{self.name}")

    async def stop(self) -> None:
        if self.loop_task:
            self.loop_task.cancel()
            await asyncio.gather(self.loop_task, return_exceptions=True)

    def check_started(self) -> None:
        if self.loop_task is None:
            raise RuntimeError(f"the {self.name} {self.kind} is not started")
