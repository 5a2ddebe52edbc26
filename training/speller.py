"""Train the speller: `python -m training.speller --data ../shared/data/spelling --out runs/speller`."""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

import torch
from torch import nn

from training import speller_data
from training.loop import Goal, Run, fit, read_checkpoint, run_args, setup
from training.metrics import exact_match, mean_bleu
from training.sequence import length_batches
from training.speller_model import SpellerNet

VOCAB = speller_data.SPECIALS + list(speller_data.ALPHABET)
PAD_ID, SOS_ID, EOS_ID, UNK_ID = range(4)
CHAR_ID = {ch: i for i, ch in enumerate(VOCAB)}


def encode(word: str) -> list[int]:
    return [CHAR_ID.get(ch, UNK_ID) for ch in word]


def decode_ids(ids: list[int]) -> str:
    chars = []
    for i in ids:
        if i == EOS_ID:
            break
        if i >= len(speller_data.SPECIALS):
            chars.append(VOCAB[i])
    return "".join(chars)


def pad(rows: list[list[int]]) -> torch.Tensor:
    out = torch.full((len(rows), max(len(r) for r in rows)), PAD_ID, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def make_batch(pairs: list[tuple[str, str]]) -> tuple[torch.Tensor, ...]:
    src = [encode(w) for w, _ in pairs]
    tgt = [encode(t) for _, t in pairs]
    return (
        pad(src),
        torch.tensor([len(s) for s in src]),
        pad([[SOS_ID, *t] for t in tgt]),
        pad([[*t, EOS_ID] for t in tgt]),
    )


def predict(model: SpellerNet, words: list[str], max_len: int, batch_size: int = 512) -> list[str]:
    """Greedy corrections for `words`, decoded in batches of similar length, returned in input order."""
    model.eval()
    order = sorted(range(len(words)), key=lambda i: len(words[i]))
    out = [""] * len(words)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        src, src_len, _, _ = make_batch([(words[i], words[i]) for i in chunk])
        ids = model.greedy(src, src_len, SOS_ID, EOS_ID, max_len + 1)
        for i, row in zip(chunk, ids.tolist(), strict=True):
            out[i] = decode_ids(row)
    return out


def evaluate(model: SpellerNet, pairs: list[tuple[str, str]], max_len: int) -> dict[str, float]:
    model.eval()
    loss_fn = nn.CrossEntropyLoss(ignore_index=PAD_ID, reduction="sum")
    total, count = 0.0, 0
    with torch.no_grad():
        for chunk in length_batches(pairs, 512, None):
            src, src_len, tgt_in, tgt_out = make_batch(chunk)
            logits = model(src, src_len, tgt_in)
            total += loss_fn(logits.reshape(-1, logits.size(-1)), tgt_out.reshape(-1)).item()
            count += int((tgt_out != PAD_ID).sum())
    predictions = predict(model, [w for w, _ in pairs], max_len)
    targets = [t for _, t in pairs]
    return {"loss": total / count, "exact": exact_match(predictions, targets), "bleu": mean_bleu(predictions, targets)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="folder with the lab's train.json and test.json")
    parser.add_argument("--codespell", type=Path, help="codespell dictionary.txt (default: the installed package's)")
    parser.add_argument("--frequency", type=Path, help="SymSpell frequency list (default: the installed package's)")
    parser.add_argument("--extra-words", type=Path, help="pyspellchecker en.json.gz (default: the installed package's)")
    parser.add_argument("--out", type=Path, default=Path("runs/speller"))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=3, help="epochs without a better validation exact match")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--emb", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--max-len", type=int, default=24, help="longest word, in characters, trained and served")
    parser.add_argument("--synthetic-words", type=int, default=30000, help="frequent words given synthetic typos")
    parser.add_argument("--limit", type=int, default=0, help="train on the first N pairs only (for smoke tests)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", type=Path, help="start from this checkpoint's weights (same sizes)")
    args = parser.parse_args(argv)

    setup(args.seed, args.threads)
    data = speller_data.build(
        args.data,
        args.codespell,
        args.frequency,
        synthetic_words=args.synthetic_words,
        max_len=args.max_len,
        seed=args.seed,
    )
    train = data.train[: args.limit] if args.limit else data.train
    valid = data.valid[: max(args.limit // 10, 50)] if args.limit else data.valid
    print(
        f"train {len(train)} pairs, valid {len(valid)}, held-out {len(data.heldout)}, "
        f"dictionary {len(data.dictionary)} words"
    )

    model = SpellerNet(len(VOCAB), args.emb, args.hidden, args.dropout)
    if args.resume:
        model.load_state_dict(read_checkpoint(args.resume)["state_dict"])
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=1)
    loss_fn = nn.CrossEntropyLoss(ignore_index=PAD_ID)
    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    # Export needs the decoding dictionary beside the weights; it is known before training starts.
    (args.out / "dictionary.txt").write_text("".join(f"{w}\t{n}\n" for w, n in data.dictionary.items()))

    def losses(chunk: list[tuple[str, str]]):
        src, src_len, tgt_in, tgt_out = make_batch(chunk)
        logits = model(src, src_len, tgt_in)
        yield loss_fn(logits.reshape(-1, logits.size(-1)), tgt_out.reshape(-1)), 1.0

    run = Run(
        batches=lambda: length_batches(train, args.batch_size, rng),
        losses=losses,
        evaluate=lambda: evaluate(model, valid, args.max_len),
        record=lambda train_loss, valid: {"loss/train": train_loss, "loss/valid": valid["loss"],
                                          "accuracy/exact": valid["exact"], "accuracy/bleu4": valid["bleu"]},
        checkpoint=lambda epoch, valid: {"vocab": VOCAB, "max_len": args.max_len, "valid": valid,
                                         "args": run_args(args)},
        goal=Goal("exact", "max"),
        title="speller",
        clip=1.0,
        series=("loss/train", "loss/valid", "accuracy/exact", "accuracy/bleu4"),
    )  # fmt: skip
    progress = fit(model, optimizer, scheduler, run, args.out, args)
    history = progress.history
    summary = {
        "best_valid_exact": progress.best,
        "history": history,
        "sources": data.sources,
        "train_pairs": len(train),
        "valid_pairs": len(valid),
        "heldout_pairs": len(data.heldout),
        "ppl_valid": math.exp(min(history["loss/valid"])),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
