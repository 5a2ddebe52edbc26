"""The poet's language models as its form logic sees them (app/adapters/poet.py): one step over a batch of rows,
each row's memory kept in a state the form logic never looks into, only takes rows from and concatenates.

- `LSTMState` (h, c): the LSTM poet's whole memory, the same size whatever a row has read.
- `KVCache`: the Transformer poet's keys and values of every position a row has read. Rows that joined the batch
  at different times have read different numbers of positions: row b's entries are the first `length[b]` slots,
  the rest free, and the step graph masks the free slots by the row's own position. The graph only reads the
  cache and returns the new position's key and value, which `append` writes into each row's next slot in place
  (the cache grows by SLOTS at a time when a row reaches its end); `concat` pads narrower caches on the right,
  `take` drops the slots no kept row needs. No step copies the cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self

import numpy as np
import onnxruntime as ort

from app.runtime.artifacts import ArtifactError, Manifest
from app.runtime.sessions import choose_precision, open_session
from app.settings import Settings


class LMState(Protocol):
    def take(self, index: np.ndarray) -> Self:
        """The rows at `index` (ints or a boolean mask), in that order."""
        ...

    @staticmethod
    def concat(parts: list) -> LMState:
        """Several batches' states as one, in order."""
        ...


class LanguageModel(Protocol):
    session: ort.InferenceSession
    context: int | None  # the positions it reads at most (None: any number)

    def start(self, rows: int) -> LMState:
        """The state of `rows` poems that have read nothing yet (their first input is <bos>)."""
        ...

    def step(self, token: np.ndarray, state: LMState) -> tuple[np.ndarray, LMState]:
        """Each row reads its token [B] → the logits of its next character [B, V] and the state after."""
        ...


@dataclass
class LSTMState:
    h: np.ndarray  # [layers, B, hidden]
    c: np.ndarray

    def take(self, index: np.ndarray) -> LSTMState:
        return LSTMState(self.h[:, index], self.c[:, index])

    @staticmethod
    def concat(parts: list[LSTMState]) -> LSTMState:
        return LSTMState(*(np.concatenate([getattr(p, k) for p in parts], axis=1) for k in ("h", "c")))


SLOTS = 32  # cache slots added at a time: a step reads every slot, so few free ones; a growth copies the cache


def _slots_for(length: int, limit: int) -> int:
    """Slots enough for a row of `length` positions and its next one, in whole SLOTS, at most `limit`."""
    return min(-(-(length + 1) // SLOTS) * SLOTS, limit)


@dataclass
class KVCache:
    keys: np.ndarray  # [layers, B, heads, S, head_dim]: row b's entries in its first `length[b]` slots, then free
    values: np.ndarray
    length: np.ndarray  # [B] int64: positions read, which is also the position of the row's next input
    limit: int  # the most slots a row can need: the model's context

    def take(self, index: np.ndarray) -> KVCache:
        length = self.length[index]
        width = _slots_for(int(length.max()) if len(length) else 0, self.limit)
        return KVCache(self.keys[:, index, :, :width], self.values[:, index, :, :width], length, self.limit)

    @staticmethod
    def concat(parts: list[KVCache]) -> KVCache:
        width = max(p.keys.shape[3] for p in parts)

        def padded(x: np.ndarray) -> np.ndarray:
            return np.pad(x, [(0, 0), (0, 0), (0, 0), (0, width - x.shape[3]), (0, 0)])

        return KVCache(
            np.concatenate([padded(p.keys) for p in parts], axis=1),
            np.concatenate([padded(p.values) for p in parts], axis=1),
            np.concatenate([p.length for p in parts]),
            parts[0].limit,
        )

    def append(self, key: np.ndarray, value: np.ndarray) -> KVCache:
        """The cache with each row's new position (key, value [layers, B, heads, head_dim]) in its next slot,
        written in place: the slot is free, so the state before it still reads the same."""
        keys, values, width = self.keys, self.values, self.keys.shape[3]
        if len(self.length) and int(self.length.max()) >= width:
            grown = [(0, 0), (0, 0), (0, 0), (0, _slots_for(int(self.length.max()), self.limit) - width), (0, 0)]
            keys, values = np.pad(keys, grown), np.pad(values, grown)
        rows = np.arange(len(self.length))
        keys[:, rows, :, self.length] = key.transpose(1, 0, 2, 3)  # advanced indices first: [B, layers, heads, d]
        values[:, rows, :, self.length] = value.transpose(1, 0, 2, 3)
        return KVCache(keys, values, self.length + 1, self.limit)


class LSTMStep:
    context = None

    def __init__(self, session: ort.InferenceSession, config: dict) -> None:
        self.session, self.layers, self.hidden = session, int(config["layers"]), int(config["hidden"])

    def start(self, rows: int) -> LSTMState:
        state = np.zeros((self.layers, rows, self.hidden), np.float32)
        return LSTMState(state, state.copy())

    def step(self, token: np.ndarray, state: LSTMState) -> tuple[np.ndarray, LSTMState]:
        logits, h, c = self.session.run(None, {"token": token, "h": state.h, "c": state.c})
        return logits, LSTMState(h, c)


class TransformerStep:
    def __init__(self, session: ort.InferenceSession, config: dict) -> None:
        self.session = session
        self.layers, self.heads = int(config["layers"]), int(config["heads"])
        self.head_dim = int(config["d_model"]) // self.heads
        self.context: int | None = int(config["context"])

    def start(self, rows: int) -> KVCache:
        shape = (self.layers, rows, self.heads, min(SLOTS, self.context), self.head_dim)
        return KVCache(np.zeros(shape, np.float32), np.zeros(shape, np.float32), np.zeros(rows, np.int64), self.context)

    def step(self, token: np.ndarray, state: KVCache) -> tuple[np.ndarray, KVCache]:
        feeds = {"token": token, "position": state.length, "past_keys": state.keys, "past_values": state.values}
        logits, key, value = self.session.run(None, feeds)
        return logits, state.append(key, value)


# The manifest's "decoder_state" → what carries a row's memory between steps and what it needs from the config.
STEPS: dict[str, tuple[type[LSTMStep] | type[TransformerStep], tuple[str, ...]]] = {
    "lstm": (LSTMStep, ("layers", "hidden")),
    "kv_cache": (TransformerStep, ("layers", "heads", "d_model", "context")),
}


def open_language_model(folder: Path, manifest: Manifest, settings: Settings) -> tuple[LSTMStep | TransformerStep, str]:
    """The artifact's step graph in the precision to serve (int8 on a CPU when offered: about three times as fast
    a step for the LSTM, docs/poet_quality.md), and that precision."""
    kind = manifest.model_extra.get("decoder_state", "lstm")  # artifacts from before the Transformer: LSTM
    if kind not in STEPS:
        raise ArtifactError(f"{folder / 'manifest.json'}: decoder_state {kind!r} is not one of {sorted(STEPS)}")
    step, needs = STEPS[kind]
    config = manifest.model_extra.get("config") or {}
    if not all(config.get(key) for key in needs):
        raise ArtifactError(f"{folder / 'manifest.json'}: config needs {' and '.join(needs)}")
    precision, (graph,) = choose_precision(folder, manifest, ["poet_step"], settings.poet_precision, settings.providers)
    float_graph = precision == "float32"  # its weights may be stored as int8 (training/export/onnx_passes.py)
    return step(open_session(folder, graph, settings, fold_dequantize=float_graph), config), precision
