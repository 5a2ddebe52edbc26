"""Padding-aware helpers shared by the character models."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

import torch

Item = TypeVar("Item", bound=Sequence)


def reverse_within_length(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """[B, T] gather index that reverses each row's first `length` positions and leaves padding in place.

    Two forward LSTMs, one over this reversed order, make a bidirectional encoder in which padding
    never reaches the backward pass, and which exports to ONNX without packed sequences.
    """
    positions = torch.arange(max_len, device=lengths.device)[None, :]
    return torch.where(positions < lengths[:, None], lengths[:, None] - 1 - positions, positions)


def gather_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x [B, T, D] reordered along time by index [B, T]."""
    return x.gather(1, index[:, :, None].expand(-1, -1, x.size(2)))


def length_batches(items: list[Item], batch_size: int, rng: random.Random | None) -> list[list[Item]]:
    """Batches of items whose first fields (the input strings) have similar lengths, so little of each batch is
    padding; shuffled within each length and in batch order when `rng` is given (training)."""
    order = sorted(items, key=lambda item: (len(item[0]), rng.random() if rng else 0))
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if rng:
        rng.shuffle(chunks)
    return chunks
