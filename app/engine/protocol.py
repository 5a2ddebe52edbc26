"""The small protocols between the engine and the models: the engine's schedulers know these, never a model.

- `BatchModel`: answers a list of items in one call (the classifier; the speller when batched dynamically).
- `StepModel`: a step-wise decoder whose batch of rows requests can join and leave between steps (the poet, a
  row per poem; the speller, rows per word); app/engine/continuous.py batches it continuously, `decode_all` runs
  one fixed batch to its end.
- `ItemSplitter`: a model whose requests carry texts but which decodes smaller items of them (the speller's
  unknown words), so that each item can join the running batch on its own (app/engine/fan_out.py).
- `Scheduler`: what a route awaits, whichever scheduler serves the model; `ItemScheduler`: one that answers a
  request's many items (app/engine/fan_out.py hands it the items of `ItemSplitter`).
"""

from __future__ import annotations

from typing import Any, Protocol, Self, runtime_checkable

import numpy as np


class Scheduler(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def submit(self, items: Any) -> Any:
        """The answers of one request's items (or of one plan, for a scheduler of single plans)."""
        ...


class ItemScheduler(Scheduler, Protocol):
    async def submit_many(self, items: list[Any]) -> list[Any]:
        """One answer per item of one request, in order."""
        ...


class BatchModel(Protocol):
    name: str

    def batch(self, items: list[Any]) -> list[Any]:
        """One answer per item, in order."""
        ...


class ItemSplitter(Protocol):
    def split(self, texts: list[str]) -> tuple[Any, list[Any]]:
        """What the texts hold for `join` to use, and the distinct items to decode."""
        ...

    def join(self, texts: list[str], found: Any, items: list[Any], answers: list[Any]) -> list[Any]:
        """One answer per text, from what `split` found and each item's answer."""
        ...


class Rows(Protocol):
    """A running batch: one entry per request item (poem, word), whatever rows it takes in the graph."""

    def __len__(self) -> int: ...

    def take(self, keep: np.ndarray) -> Self:
        """The items where the boolean mask `keep` is set."""
        ...

    @staticmethod
    def concat(parts: list[Any]) -> Any:
        """Several batches as one, in order."""
        ...


class StepModel(Protocol):
    name: str

    def rows(self, plans: list[Any]) -> Any:
        """A batch of new items, ready for their first step."""
        ...

    def step(self, rows: Any) -> tuple[np.ndarray, np.ndarray]:
        """One decoder step over the batch, in place: each item's token (for streaming) and which finished."""
        ...

    def answers(self, rows: Any, which: np.ndarray, plans: list[Any]) -> list[Any]:
        """The results of the finished items `which` (a boolean mask), whose plans are `plans`."""
        ...


@runtime_checkable
class StreamingModel(StepModel, Protocol):
    def text_of(self, token: int) -> str | None:
        """What a streamed token shows (None: nothing, the end)."""
        ...


def decode_all(model: StepModel, plans: list[Any]) -> list[Any]:
    """Every item of `plans` in one batch, start to end: no item joins, each leaves when it finishes."""
    if not plans:
        return []
    rows: Rows = model.rows(plans)
    order = np.arange(len(plans))  # the position in `plans` of each item still in the batch
    results: list[Any] = [None] * len(plans)
    while len(rows):
        _, finished = model.step(rows)
        if finished.any():
            done = order[finished]
            for i, result in zip(done, model.answers(rows, finished, [plans[i] for i in done]), strict=True):
                results[i] = result
            rows, order = rows.take(~finished), order[~finished]
    return results
