"""The poet's language models as its form logic sees them (app/adapters/poet.py): one step over a batch of rows,
each row's memory kept in a state the form logic never looks into, only takes rows from and concatenates.

- `LSTMState` (h, c): the LSTM poet's whole memory, the same size whatever a row has read.
- `KVCache`: the Transformer poet's keys and values of every position a row has read. Rows that joined the batch
  at different times have read different numbers of positions; each row's entries are the last slots of the cache,
  padding before them, and the step graph masks the padding by the row's own position. So one concatenation in
  the graph appends the new position for every row, `concat` pads shorter caches on the left, and `take` drops the
  slots no kept row needs.
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


@dataclass
class KVCache:
    keys: np.ndarray  # [layers, B, heads, P, head_dim]: row b's `length[b]` entries last, padding before them
    values: np.ndarray
    length: np.ndarray  # [B] int64: positions read, which is also the position of the row's next input

    def take(self, index: np.ndarray) -> KVCache:
        length = self.length[index]
        start = self.keys.shape[3] - (int(length.max()) if len(length) else 0)  # slots only padding for every row
        return KVCache(self.keys[:, index, :, start:], self.values[:, index, :, start:], length)

    @staticmethod
    def concat(parts: list[KVCache]) -> KVCache:
        width = max(p.keys.shape[3] for p in parts)

        def padded(x: np.ndarray) -> np.ndarray:
            return np.pad(x, [(0, 0), (0, 0), (0, 0), (width - x.shape[3], 0), (0, 0)])

        return KVCache(
            np.concatenate([padded(p.keys) for p in parts], axis=1),
            np.concatenate([padded(p.values) for p in parts], axis=1),
            np.concatenate([p.length for p in parts]),
        )


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
        empty = np.zeros((self.layers, rows, self.heads, 0, self.head_dim), np.float32)
        return KVCache(empty, empty, np.zeros(rows, np.int64))

    def step(self, token: np.ndarray, state: KVCache) -> tuple[np.ndarray, KVCache]:
        feeds = {"token": token, "position": state.length, "past_keys": state.keys, "past_values": state.values}
        logits, keys, values = self.session.run(None, feeds)
        return logits, KVCache(keys, values, state.length + 1)


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
