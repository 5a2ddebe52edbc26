"""Texts in, answers out, for a model that decodes smaller items of each text (the speller's unknown words):
a request's items go to an item scheduler on their own, whatever else is being decoded (joining the running
continuous batch word by word, or taken in bounded pieces by dynamic batching), and the request is answered
once all its items are back."""

from __future__ import annotations

from typing import Any

import anyio.to_thread

from app.engine.isolation import check_encodable
from app.engine.protocol import ItemScheduler, ItemSplitter

INLINE_CHARS = 2000  # requests up to this many characters in all are split and joined on the event loop


class FanOut:
    def __init__(self, model: ItemSplitter, items: ItemScheduler) -> None:
        self.model, self.items = model, items

    async def start(self) -> None:
        await self.items.start()

    async def stop(self) -> None:
        await self.items.stop()

    async def submit(self, texts: list[str]) -> list[Any]:
        check_encodable(texts)
        # Splitting a full request (64 texts of 2,000 characters) takes tens of milliseconds: off the event loop
        # then. A short one costs less than the hop to a worker thread.
        small = sum(map(len, texts)) <= INLINE_CHARS
        found, items = self.model.split(texts) if small else await anyio.to_thread.run_sync(self.model.split, texts)
        answers = await self.items.submit_many(items)
        if small:
            return self.model.join(texts, found, items, answers)
        return await anyio.to_thread.run_sync(self.model.join, texts, found, items, answers)
