"""Array helpers shared by the models' inference modules."""

from __future__ import annotations

import numpy as np


def pad_rows(flat: np.ndarray, lengths: np.ndarray, pad: int) -> np.ndarray:
    """Rows given end to end (`flat`, row i being `lengths[i]` long) → [B, max length], padded at the end.

    One scatter for the whole batch, no loop over rows or characters.
    """
    rows = np.repeat(np.arange(len(lengths)), lengths)
    cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out = np.full((len(lengths), int(lengths.max())), pad, dtype=np.int64)
    out[rows, cols] = flat
    return out
