"""The engine's connection to each HTTP worker: one Unix stream socket, each message a pickled tuple behind its
length. asyncio's own streams buffer the writes, so two processes sending large messages to each other never
block each other; pyzmq's asyncio sockets and multiprocessing pipes cost more per request
(bench/ipc_cost.py, docs/design.md). The socket lies in a folder only this user can enter: pickles come only
from charserve's own processes.

Worker → engine: ("hello", 0) · ("submit", id, model, items, seconds) · ("stream", id, model, plan, seconds) ·
("cancel", id). Engine → worker: ("hello", 0, models) · ("accepted", id) · ("char", id, text) ·
("result", id, value) · ("error", id, kind, message).
"""

from __future__ import annotations

import asyncio
import pickle
from dataclasses import dataclass, field
from typing import Any

from app.engine.errors import DeadlineExceeded, InvalidInput, Overloaded

LENGTH = 4  # bytes of each message's length, little-endian

# The engine's refusals, carried back by kind and raised again in the worker, where the app's handlers answer
# them as they would in one process (503, 504, 422); any other error is "error" (500).
KINDS: dict[str, type[Exception]] = {"overloaded": Overloaded, "deadline": DeadlineExceeded, "invalid": InvalidInput}


def kind_of(exc: BaseException) -> str:
    return next((kind for kind, cls in KINDS.items() if isinstance(exc, cls)), "error")


class EngineError(RuntimeError):
    """The engine failed on this request for a reason that is not the client's (an HTTP 500)."""


def error_of(kind: str, message: str) -> Exception:
    return KINDS.get(kind, EngineError)(message)


@dataclass(frozen=True)
class ModelInfo:
    """What /ready shows of a model that lives in the engine, and what a route reads of it before scheduling
    (the speller's server-wide policy, which a request's own options start from)."""

    name: str
    version: str
    provider: str
    policy: Any = None


@dataclass(frozen=True)
class PlanCall:
    """A poem's plan, made by the engine's poet (`model.plan(**arguments)`): the HTTP workers hold no model."""

    arguments: dict[str, Any] = field(default_factory=dict)


def write(writer: asyncio.StreamWriter, message: tuple) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(len(payload).to_bytes(LENGTH, "little") + payload)


async def read(reader: asyncio.StreamReader) -> tuple:
    """The next message; asyncio.IncompleteReadError when the other side has gone."""
    size = int.from_bytes(await reader.readexactly(LENGTH), "little")
    return pickle.loads(await reader.readexactly(size))
