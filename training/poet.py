"""Train the poet: `python -m training.poet --out runs/poet` (fetches the poems with npm the first time).

A 2-layer LSTM language model over whole poems, each read from <bos> to <eos> with a zero start state,
which is exactly how the service starts a poem. Long poems are read in chunks of `--bptt` characters,
the state carried across chunks (truncated backpropagation). `--optimizer` picks one of the four of the
published comparison; `--max-minutes` bounds a run on a small machine, and `--resume` continues one.

`--arch transformer` trains the Transformer poet instead (training/poet_transformer_model.py) on the same
split and vocabulary, so that the two perplexities per character compare directly: `--layers`, `--d-model`,
`--heads`, `--context` size it, and poems longer than its context are read in windows
(training/poet_transformer.py).
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

import torch
from torch import nn

from training import poet_data, poet_transformer
from training.loop import Goal, Run, fit, read_checkpoint, resume, run_args, setup
from training.poet_model import PoetLM
from training.poet_transformer_model import PoetTransformer, PoetTransformerConfig
from training.sequence import length_batches

DEFAULT_LR = {"sgd": 1.0, "momentum": 0.1, "adagrad": 0.1, "adam": 2e-3, "adamw": 1e-3}
WEIGHT_DECAY = 0.1  # adamw: on matrices and embeddings only, as nanoGPT (decaying gains and biases only hurts)


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr)
    if name == "adamw":
        params = list(params)
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": WEIGHT_DECAY},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]  # fmt: skip
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))
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


def evaluate_perplexity(model: nn.Module, poems: list[list[int]], args: argparse.Namespace) -> float:
    """Perplexity per character of whole poems, <eos> included, whichever the architecture."""
    if isinstance(model, PoetTransformer):
        return poet_transformer.perplexity(model, poems, args.eval_stride)
    assert isinstance(model, PoetLM)
    return perplexity(model, poems)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="a folder of poet.tang.*.json (default: fetch with npm)")
    parser.add_argument("--cache", type=Path, default=poet_data.DEFAULT_CACHE)
    parser.add_argument("--out", type=Path, default=Path("runs/poet"))
    parser.add_argument("--script", choices=["simplified", "traditional"], default="simplified")
    parser.add_argument("--min-count", type=int, default=5)
    parser.add_argument("--arch", choices=["lstm", "transformer"], default="lstm")
    parser.add_argument("--emb", type=int, default=256, help="lstm")
    parser.add_argument("--hidden", type=int, default=512, help="lstm")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--d-model", type=int, default=512, help="transformer")
    parser.add_argument("--heads", type=int, default=8, help="transformer")
    parser.add_argument("--context", type=int, default=256, help="transformer: positions it reads (serves ≤ this - 1)")
    parser.add_argument("--eval-stride", type=int, help="transformer: windows' stride on long poems (default: half)")
    parser.add_argument("--warmup", type=int, default=200, help="transformer: optimizer steps of rising learning rate")
    parser.add_argument("--dropout", type=float, default=0.2)
    # 16 poems a step on a CPU: the logits of 16 stay in cache, so more characters a second than 64 and four
    # times the updates an epoch; a GPU wants 64 (make poet-train-gpu).
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--bptt", type=int, default=128)
    parser.add_argument("--optimizer", choices=sorted(DEFAULT_LR), help="default: adam (lstm), adamw (transformer)")
    parser.add_argument("--lr", type=float, help="default: sgd 1.0, momentum 0.1, adagrad 0.1, adam 2e-3, adamw 1e-3")
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
    args.optimizer = args.optimizer or ("adamw" if args.arch == "transformer" else "adam")
    args.lr = args.lr if args.lr is not None else DEFAULT_LR[args.optimizer]
    args.eval_stride = args.eval_stride or args.context // 2
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    setup(args.seed, args.threads)
    folder = args.data or poet_data.fetch(args.cache)
    data = poet_data.build(folder, args.script, args.min_count)
    char_id = {ch: i for i, ch in enumerate(data.vocab)}
    train = [poet_data.encode(p.text, char_id) for p in data.train]
    valid = [poet_data.encode(p.text, char_id) for p in data.valid]
    if args.limit:
        train, valid = train[: args.limit], valid[: max(args.limit // 10, 20)]
    print(json.dumps(data.stats, ensure_ascii=False))

    if args.arch == "transformer":
        config = PoetTransformerConfig(len(data.vocab), args.context, args.layers, args.heads, args.d_model,
                                       args.dropout)  # fmt: skip
        model: nn.Module = PoetTransformer(config).to(args.device)
    else:
        model = PoetLM(len(data.vocab), args.emb, args.hidden, args.layers, args.dropout).to(args.device)
    optimizer = make_optimizer(args.optimizer, model.parameters(), args.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.25, patience=0)
    progress = resume(args.resume, model, optimizer, scheduler) if args.resume else None
    rng = random.Random(args.seed + (progress.epoch if progress else 0) + 1)

    def lstm_losses(batch: list[tuple[list[int]]]):
        """One loss a chunk of --bptt characters, the state carried into the next chunk but not its gradient."""
        inputs, targets = pad([ids for (ids,) in batch])
        state = None
        for x, y in chunks(inputs.to(args.device), targets.to(args.device), args.bptt):
            logits, state = model(x, state)
            state = tuple(s.detach() for s in state)
            n = int((y != -100).sum())
            yield nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum") / n, n

    def checkpoint(epoch: int, metrics: dict | None) -> dict:
        assert metrics is not None
        return {"vocab": data.vocab, "data": data.stats, "valid_perplexity": metrics["perplexity"],
                "args": run_args(args)}  # fmt: skip

    if isinstance(model, PoetTransformer):
        windows = poet_transformer.segments(train, args.context, args.context)
        batches = lambda: length_batches(windows, args.batch_size, rng)  # noqa: E731
        warmup = 0 if progress else args.warmup  # a resumed run's rate is the schedule's already
        losses = poet_transformer.training_losses(model, args.device, args.lr, warmup, optimizer)
    else:
        batches = lambda: length_batches([(ids,) for ids in train], args.batch_size, rng)  # noqa: E731
        losses = lstm_losses

    run = Run(
        batches=batches,
        losses=losses,
        evaluate=lambda: {"perplexity": evaluate_perplexity(model, valid, args)},
        record=lambda train_loss, valid: {"perplexity/train": math.exp(train_loss),
                                          "perplexity/valid": valid["perplexity"]},
        checkpoint=checkpoint,
        goal=Goal("perplexity", "min"),
        title=f"poet ({args.arch}, {args.optimizer})",
        clip=args.clip,
        keep_last=True,
        series=("perplexity/train", "perplexity/valid"),
    )  # fmt: skip
    progress = fit(model, optimizer, scheduler, run, args.out, args, progress)

    best_state = read_checkpoint(args.out / "best.pt")
    model.load_state_dict(best_state["state_dict"])
    test = [poet_data.encode(p.text, char_id) for p in data.test]
    test_ppl = evaluate_perplexity(model, test, args)
    print(f"test perplexity {test_ppl:.2f} (best epoch {best_state['epoch']})")
    summary = {
        "arch": args.arch,
        "optimizer": args.optimizer,
        "lr": args.lr,
        "best_epoch": best_state["epoch"],
        "best_valid_perplexity": best_state["valid_perplexity"],
        "test_perplexity": test_ppl,
        "history": progress.history,
        "cut_epoch": progress.cut,
        "data": data.stats,
        "args": run_args(args),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    return summary


if __name__ == "__main__":
    main()
