"""The training loop the three models share, as word_language_model's train() and evaluate() are for one.

Each model supplies its batches, the losses of a batch, a validation and what its checkpoint records; `fit` runs
the epochs: an optimizer step per loss (gradients clipped), validation after each epoch, the learning-rate
schedule stepped on the validation figure, best.pt written whenever that figure improves, early stopping after
`patience` epochs without, curves.png, and optionally a time bound and a resumable last.pt.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from training.curves import save_curves

Metrics = dict[str, float]


@dataclass
class Goal:
    """The validation figure that selects the checkpoint and steps the schedule, and which way is better."""

    metric: str
    mode: str = "max"

    def better(self, value: float, best: float | None) -> bool:
        return best is None or (value > best if self.mode == "max" else value < best)


@dataclass
class Progress:
    """Where a run stands: the last whole epoch, the best validation figure so far and the per-epoch history."""

    history: dict[str, list[float]]
    epoch: int = 0
    best: float | None = None
    cut: dict | None = None  # the epoch the time bound stopped part-way, if it did


def setup(seed: int, threads: int) -> None:
    """What every run does first: a fixed seed, and torch's threads when asked (0: torch's default)."""
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)


def read_checkpoint(path: Path) -> dict:
    """A checkpoint as torch.save wrote it: plain dicts, lists and tensors, loaded onto the CPU."""
    return torch.load(path, map_location="cpu", weights_only=False)


def run_args(args: argparse.Namespace) -> dict[str, str]:
    """A run's command-line arguments as its checkpoint and summary record them."""
    return {k: str(v) for k, v in vars(args).items()}


def resume(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any) -> Progress:
    """Continue a run from its last.pt: the weights, the optimizer's and the schedule's state, the history."""
    state = read_checkpoint(path)
    model.load_state_dict(state["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    best = state.get("best_valid", state.get("best_valid_perplexity"))  # the poet's runs named it so
    return Progress(history=state["history"], epoch=state["epoch"], best=best)


@dataclass
class Run:
    """How one model trains: everything `fit` calls back.

    batches: the batches of one epoch, in the order to train on them.
    losses: a batch's losses, each with its weight in the epoch's mean: one optimizer step each (a model that
        reads long sequences in chunks yields one per chunk, its state carried across them).
    evaluate: the validation figures after an epoch (None: the run does not validate, see `replay`).
    record: the history row of an epoch: its name → value, from the mean training loss and the validation.
    checkpoint: what a checkpoint records beside the weights, for an epoch and its validation (None when the run
        does not validate).
    """

    batches: Callable[[], Sequence]
    losses: Callable[[Any], Iterable[tuple[torch.Tensor, float]]]
    evaluate: Callable[[], Metrics] | None
    record: Callable[[float, Metrics | None], dict[str, float]]
    checkpoint: Callable[[int, Metrics | None], dict]
    goal: Goal
    title: str
    clip: float = 1.0
    # A run that learns from the validation data too has nothing left to select on: its schedule replays the
    # validated run's figures (one an epoch), and its last epoch is kept.
    replay: list[float] | None = None
    keep_last: bool = False  # also write last.pt after every epoch, to resume from
    series: tuple[str, ...] = ()  # the history's series, in the order the curves show them


def train_epoch(
    model: nn.Module, optimizer: torch.optim.Optimizer, run: Run, batches: Sequence, epoch: int, deadline: float
) -> tuple[float, int]:
    """One pass over `batches` → the weighted mean training loss and the number of batches done before the
    deadline, if one came first."""
    model.train()
    total, weight, done = 0.0, 0.0, 0
    bar = tqdm(batches, desc=f"epoch {epoch}", unit="batch")
    for batch in bar:
        for loss, w in run.losses(batch):
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), run.clip)
            optimizer.step()
            total, weight = total + loss.item() * w, weight + w
        bar.set_postfix(loss=f"{total / max(weight, 1):.3f}")
        done += 1
        if time.time() > deadline:
            break
    return total / max(weight, 1), done


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    run: Run,
    out: Path,
    args: argparse.Namespace,
    progress: Progress | None = None,
) -> Progress:
    """Train for args.epochs (at most), with args.patience and args.max_minutes (0 or absent: no bound), from
    `progress` when resuming. Writes best.pt (the best validated epoch, or the last one with `replay`), curves.png,
    and with run.keep_last last.pt."""
    progress = progress or Progress(history={name: [] for name in run.series})
    out.mkdir(parents=True, exist_ok=True)
    max_minutes = getattr(args, "max_minutes", 0) or 0
    deadline = time.time() + 60 * max_minutes if max_minutes else math.inf
    since_best = 0

    def save(name: str, epoch: int, metrics: Metrics | None, **extra: Any) -> None:
        state = {"config": model.config, "state_dict": model.state_dict(), "epoch": epoch,
                 **run.checkpoint(epoch, metrics), **extra}  # fmt: skip
        if run.keep_last:
            state |= {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                      "history": progress.history, "best_valid": progress.best}  # fmt: skip
        torch.save(state, out / name)

    for epoch in range(progress.epoch + 1, args.epochs + 1):
        started = time.time()
        batches = run.batches()
        train_loss, done = train_epoch(model, optimizer, run, batches, epoch, deadline)
        if run.replay is not None:
            scheduler.step(run.replay[epoch - 1])
            _append(progress.history, run.record(train_loss, None))
            print(f"epoch {epoch}: train loss {train_loss:.4f}, {time.time() - started:.0f}s", flush=True)
            progress.epoch = epoch
            if epoch == args.epochs:
                save("best.pt", epoch, None)
            continue
        assert run.evaluate is not None
        metrics = run.evaluate()
        value = metrics[run.goal.metric]
        if done < len(batches):
            # Cut by the time bound: not an epoch. It does not step the schedule, count towards early stopping or
            # enter the history; last.pt says the epoch before, so a resumed run trains this one again whole.
            print(f"stopped: --max-minutes {max_minutes} reached {done} of {len(batches)} batches into epoch "
                  f"{epoch}; valid {run.goal.metric} {value:.4f}", flush=True)  # fmt: skip
            if run.goal.better(value, progress.best):
                progress.best = value
                save("best.pt", epoch, metrics, epoch_fraction=done / len(batches))
            if run.keep_last:
                save("last.pt", epoch - 1, metrics)
            progress.cut = {"epoch": epoch, "fraction": done / len(batches), f"valid_{run.goal.metric}": value}
            break
        scheduler.step(value)
        _append(progress.history, run.record(train_loss, metrics))
        progress.epoch = epoch
        row = ", ".join(f"{name} {values[-1]:.4f}" for name, values in progress.history.items() if values)
        lr = optimizer.param_groups[0]["lr"]
        print(f"epoch {epoch}: {row}, lr {lr:.2g}, {time.time() - started:.0f}s", flush=True)
        save_curves(progress.history, out / "curves.png", run.title)
        improved = run.goal.better(value, progress.best)
        if improved:
            progress.best, since_best = value, 0
        if run.keep_last:
            save("last.pt", epoch, metrics)
        if improved:
            save("best.pt", epoch, metrics)
        else:
            since_best += 1
            if since_best >= args.patience:
                print(f"early stop: no better validation {run.goal.metric} for {args.patience} epochs")
                break
        if time.time() > deadline:
            print(f"stopped: --max-minutes {max_minutes} reached")
            break
    return progress


def _append(history: dict[str, list[float]], row: dict[str, float]) -> None:
    for name, value in row.items():
        history.setdefault(name, []).append(value)
