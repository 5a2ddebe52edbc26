"""Train the poet: `python -m training.poet --out runs/poet` (fetches the poems with npm the first time).

A 2-layer LSTM language model over whole poems, each read from <bos> to <eos> with a zero start state,
which is exactly how the service starts a poem. Long poems are read in chunks of `--bptt` characters,
the state carried across chunks (truncated backpropagation). `--optimizer` picks one of the four of the
published comparison; `--max-minutes` bounds a run on a small machine, and `--resume` continues one.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from training import poet_data
from training.curves import save_curves
from training.poet_model import PoetLM
from training.sequence import length_batches

DEFAULT_LR = {"sgd": 1.0, "momentum": 0.1, "adagrad": 0.1, "adam": 2e-3}


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr)
    return torch.optim.Adam(params, lr=lr)


def pad(batch: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoded poems → inputs [B, T] and targets [B, T] (next character; -100 past each poem's end)."""
    width = max(len(ids) for ids in batch) - 1
    inputs = torch.zeros(len(batch), width, dtype=torch.long)
    targets = torch.full((len(batch), width), -100, dtype=torch.long)
    for row, ids in enumerate(batch):
        inputs[row, : len(ids) - 1] = torch.tensor(ids[:-1])
        targets[row, : len(ids) - 1] = torch.tensor(ids[1:])
    return inputs, targets


def chunks(inputs: torch.Tensor, targets: torch.Tensor, bptt: int):
    for start in range(0, inputs.size(1), bptt):
        yield inputs[:, start : start + bptt], targets[:, start : start + bptt]


@torch.no_grad()
def perplexity(model: PoetLM, poems: list[list[int]], batch_size: int = 64, bptt: int = 256) -> float:
    """exp(mean negative log-likelihood) over every predicted character of whole poems, <eos> included."""
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for batch in length_batches([(ids,) for ids in poems], batch_size, None):
        inputs, targets = pad([ids for (ids,) in batch])
        state = None
        for x, y in chunks(inputs.to(device), targets.to(device), bptt):
            logits, state = model(x, state)
            total += nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
            count += int((y != -100).sum())
    return math.exp(total / max(count, 1))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="a folder of poet.tang.*.json (default: fetch with npm)")
    parser.add_argument("--cache", type=Path, default=poet_data.DEFAULT_CACHE)
    parser.add_argument("--out", type=Path, default=Path("runs/poet"))
    parser.add_argument("--script", choices=["simplified", "traditional"], default="simplified")
    parser.add_argument("--min-count", type=int, default=5)
    parser.add_argument("--emb", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--dropout", type=float, default=0.2)
    # 16 poems a step: on 2 CPU cores 1.3x the characters per second of 64 (the logits stay in cache) and 4x the
    # updates; one epoch at 64 reached validation perplexity 406 (measured 2026-11-23).
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--bptt", type=int, default=128)
    parser.add_argument("--optimizer", choices=sorted(DEFAULT_LR), default="adam")
    parser.add_argument("--lr", type=float, help="default: sgd 1.0, momentum 0.1, adagrad 0.1, adam 2e-3")
    parser.add_argument("--clip", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--patience", type=int, default=2, help="epochs without a better validation perplexity")
    parser.add_argument("--max-minutes", type=float, default=0, help="stop training after this long (0: no bound)")
    parser.add_argument("--limit", type=int, default=0, help="train on the first N poems only (smoke tests)")
    parser.add_argument("--resume", type=Path, help="a last.pt to continue from")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (CUDA when torch sees a GPU), cpu, cuda, cuda:N")
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.lr = args.lr if args.lr is not None else DEFAULT_LR[args.optimizer]
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = args.data or poet_data.fetch(args.cache)
    data = poet_data.build(folder, args.script, args.min_count)
    char_id = {ch: i for i, ch in enumerate(data.vocab)}
    train = [poet_data.encode(p.text, char_id) for p in data.train]
    valid = [poet_data.encode(p.text, char_id) for p in data.valid]
    if args.limit:
        train, valid = train[: args.limit], valid[: max(args.limit // 10, 20)]
    print(json.dumps(data.stats, ensure_ascii=False))

    model = PoetLM(len(data.vocab), args.emb, args.hidden, args.layers, args.dropout).to(args.device)
    optimizer = make_optimizer(args.optimizer, model.parameters(), args.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.25, patience=0)
    history: dict[str, list[float]] = {"perplexity/train": [], "perplexity/valid": []}
    best, since_best, first_epoch = math.inf, 0, 1
    if args.resume:
        state = torch.load(args.resume, map_location="cpu", weights_only=False)
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, best, first_epoch = state["history"], state["best_valid_perplexity"], state["epoch"] + 1
    rng = random.Random(args.seed + first_epoch)
    args.out.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + 60 * args.max_minutes if args.max_minutes else math.inf

    def checkpoint(epoch: int, valid_ppl: float) -> dict:
        return {
            "config": model.config,
            "state_dict": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "vocab": data.vocab,
            "data": data.stats,
            "epoch": epoch,
            "valid_perplexity": valid_ppl,
            "best_valid_perplexity": min(best, valid_ppl),
            "history": history,
            "args": {k: str(v) for k, v in vars(args).items()},
        }

    cut = None  # the epoch --max-minutes stopped part-way, if it did
    for epoch in range(first_epoch, args.epochs + 1):
        model.train()
        started, total, count = time.time(), 0.0, 0
        batches = length_batches([(ids,) for ids in train], args.batch_size, rng)
        bar = tqdm(batches, desc=f"epoch {epoch}")
        done = 0
        for batch in bar:
            inputs, targets = pad([ids for (ids,) in batch])
            state = None
            for x, y in chunks(inputs.to(args.device), targets.to(args.device), args.bptt):
                logits, state = model(x, state)
                state = tuple(s.detach() for s in state)
                n = int((y != -100).sum())
                loss = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum") / n
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), args.clip)
                optimizer.step()
                total, count = total + loss.item() * n, count + n
            bar.set_postfix(ppl=f"{math.exp(total / max(count, 1)):.1f}")
            done += 1
            if time.time() > deadline:
                break
        valid_ppl = perplexity(model, valid)
        if done < len(batches):
            # Cut by --max-minutes: not an epoch. It does not step the schedule, count towards early stopping or
            # enter the history; last.pt says the epoch before, so --resume runs this one again whole.
            print(f"stopped: --max-minutes {args.max_minutes} reached {done} of {len(batches)} batches into "
                  f"epoch {epoch}; valid perplexity {valid_ppl:.2f}", flush=True)  # fmt: skip
            if valid_ppl < best:
                best = valid_ppl
                torch.save(checkpoint(epoch, valid_ppl) | {"epoch_fraction": done / len(batches)}, args.out / "best.pt")
            torch.save(checkpoint(epoch - 1, valid_ppl), args.out / "last.pt")
            cut = {"epoch": epoch, "fraction": done / len(batches), "valid_perplexity": valid_ppl}
            break
        scheduler.step(valid_ppl)
        history["perplexity/train"].append(math.exp(total / max(count, 1)))
        history["perplexity/valid"].append(valid_ppl)
        print(
            f"epoch {epoch}: train perplexity {history['perplexity/train'][-1]:.2f}, valid {valid_ppl:.2f}, "
            f"lr {optimizer.param_groups[0]['lr']:.2g}, {time.time() - started:.0f}s",
            flush=True,
        )
        save_curves(history, args.out / "curves.png", f"poet ({args.optimizer})")
        torch.save(checkpoint(epoch, valid_ppl), args.out / "last.pt")
        if valid_ppl < best:
            best, since_best = valid_ppl, 0
            torch.save(checkpoint(epoch, valid_ppl), args.out / "best.pt")
        else:
            since_best += 1
            if since_best >= args.patience:
                print(f"early stop: no better validation perplexity for {args.patience} epochs")
                break
        if time.time() > deadline:
            print(f"stopped: --max-minutes {args.max_minutes} reached")
            break

    best_state = torch.load(args.out / "best.pt", map_location="cpu", weights_only=False)
    model.load_state_dict(best_state["state_dict"])
    test = [poet_data.encode(p.text, char_id) for p in data.test]
    test_ppl = perplexity(model, test)
    print(f"test perplexity {test_ppl:.2f} (best epoch {best_state['epoch']})")
    summary = {
        "optimizer": args.optimizer,
        "lr": args.lr,
        "best_epoch": best_state["epoch"],
        "best_valid_perplexity": best_state["valid_perplexity"],
        "test_perplexity": test_ppl,
        "history": history,
        "cut_epoch": cut,
        "data": data.stats,
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    return summary


if __name__ == "__main__":
    main()
