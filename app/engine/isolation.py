"""Keeping a failure to the requests that caused it: items are checked before they join a batch, and a batched
model call that raises is run again in halves until each failing part is one request's (or one item's) own."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from app.engine.errors import InvalidInput

GroupT = TypeVar("GroupT")
ResultT = TypeVar("ResultT")


def check_encodable(texts: Sequence[Any]) -> None:
    """Refuse texts that cannot be written as UTF-8 (a lone surrogate, which JSON's \\ud800 escape can carry):
    the models read text as bytes or code points, and one such text would fail every request of its batch."""
    for i, text in enumerate(texts):
        if isinstance(text, str):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise InvalidInput(f"text {i} is not valid Unicode at character {exc.start}") from None


def bisect_failures(
    run: Callable[[list[GroupT]], ResultT], groups: list[GroupT]
) -> list[tuple[list[GroupT], ResultT | Exception]]:
    """`run` over all `groups` at once; if that raises, over each half again, down to single groups. Returns, in
    order, the runs that succeeded with their groups and results, and each group that fails alone with its
    error: one bad group costs about 2·log2(len(groups)) extra runs, and every other group gets its answer."""
    try:
        return [(groups, run(groups))]
    except Exception as exc:
        if len(groups) == 1:
            return [(groups, exc)]
    middle = len(groups) // 2
    return bisect_failures(run, groups[:middle]) + bisect_failures(run, groups[middle:])
