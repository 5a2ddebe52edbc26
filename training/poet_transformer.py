"""What training the Transformer poet needs beyond the LSTM's (`python -m training.poet --arch transformer`).

A Transformer reads at most `context` positions, so each encoded poem becomes windows of it
(training/poet_data.windows): disjoint ones to train on, overlapping ones to evaluate on, so that each predicted
character of a long poem still sees at least half a context of the poem before it. Poems that fit (about 99% of
them at 256 positions) are one window read whole, as the LSTM reads them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn

from training.poet_data import windows
from training.poet_transformer_model import PoetTransformer
from training.sequence import length_batches

Segment = tuple[list[int], list[int]]  # inputs, and the next character of each (-100: context, not counted)


def segments(poems: list[list[int]], context: int, stride: int) -> list[Segment]:
    """Every poem's windows as (inputs, targets) pairs."""
    out = []
    for ids in poems:
        for start, end, scored in windows(len(ids) - 1, context, stride):
            targets = ids[start + 1 : end + 1]
            out.append((ids[start:end], [-100] * (scored - start) + targets[scored - start :]))
    return out


def pad(batch: list[Segment]) -> tuple[torch.Tensor, torch.Tensor]:
    """Segments → inputs [B, T] and targets [B, T], padded at the end (a causal model never reads what follows)."""
    width = max(len(x) for x, _ in batch)
    inputs = torch.zeros(len(batch), width, dtype=torch.long)
    targets = torch.full((len(batch), width), -100, dtype=torch.long)
    for row, (x, y) in enumerate(batch):
        inputs[row, : len(x)] = torch.tensor(x)
        targets[row, : len(y)] = torch.tensor(y)
    return inputs, targets


def batch_loss(model: PoetTransformer, batch: list[Segment], device: str) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy of the counted targets of a batch, and their number. On a GPU in bfloat16 autocast
    (the matrix products; softmax and the loss stay float32)."""
    inputs, targets = pad(batch)
    inputs, targets = inputs.to(device), targets.to(device)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
        logits = model(inputs)
    n = int((targets != -100).sum())
    return nn.functional.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="sum") / n, n


def training_losses(model: PoetTransformer, device: str, base_lr: float, warmup: int, optimizer):
    """The `losses` of training/loop.Run: one loss a batch, the learning rate rising linearly over the first
    `warmup` optimizer steps of the run (a Transformer's first steps at the full rate can diverge)."""
    done = 0

    def losses(batch: list[Segment]) -> Iterator[tuple[torch.Tensor, int]]:
        nonlocal done
        if done < warmup:
            for group in optimizer.param_groups:
                group["lr"] = base_lr * (done + 1) / warmup
        done += 1
        yield batch_loss(model, batch, device)

    return losses


@torch.no_grad()
def perplexity(model: PoetTransformer, poems: list[list[int]], stride: int, batch_size: int = 64) -> float:
    """exp(mean negative log-likelihood) over every predicted character of whole poems, <eos> included, in
    float32; poems longer than the context read in windows `stride` apart."""
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for batch in length_batches(segments(poems, model.config["context"], stride), batch_size, None):
        inputs, targets = pad(batch)
        logits = model(inputs.to(device))
        total += nn.functional.cross_entropy(logits.flatten(0, 1), targets.to(device).flatten(), reduction="sum").item()
        count += int((targets != -100).sum())
    return math.exp(total / max(count, 1))
