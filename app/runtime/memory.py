"""Garbage collection for a process whose models hold millions of long-lived objects (docs/design.md)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG_COLLECTION_THRESHOLD = 10_000  # Python's default is 700


@contextmanager
def long_lived_objects_frozen() -> Iterator[None]:
    # The models' dictionaries, tries and vocabularies are long-lived objects by the million, and every full
    # collection would walk them all, pausing the server for a long time under load. Frozen after start-up,
    # they are left out, and a full collection walks only what requests made.
    gc.collect()
    gc.freeze()
    # Python collects its youngest objects each time 700 more are alive than at the last collection. The
    # objects of a few dozen requests in flight pass that every few requests, and each collection walks them
    # all. Raised, collections run only when garbage piles up.
    thresholds = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()  # another app in this process (the tests) must not keep this one's objects frozen
