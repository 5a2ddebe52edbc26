"""Peer (d) of bench/serving.py: a naive server as in the original lab code. PyTorch eager, one request at a
time, no batching across requests, no ONNX.

    python -m bench.naive_server --port 8000

By default it runs the bundled models' own weights, read back from their float32 graphs
(training/onnx_weights.py), so it needs no training run; `--speller` and `--classifier` also take training
checkpoints (`best.pt`, several for the classifier's members). Single-text requests only (`{"text": ...}`),
what the benchmark sends. Its speller decodes greedily, less work per word than the service's 16-wide beam
with a dictionary prior: a ratio against it is, if anything, in the naive server's favour.
"""

from __future__ import annotations

import argparse
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
import uvicorn
from fastapi import FastAPI
from torch import nn

from training.classifier import checkpoint_lexicon, clip, encode, lexicon_tensor
from training.classifier_data import LABELS, Lexicon, normalise, read_lexicon
from training.classifier_model import NameClassifierEnsemble
from training.export import load_classifier, load_speller
from training.onnx_weights import load_classifier_artifact, load_speller_artifact
from training.speller import predict as correct
from training.speller_model import SpellerNet


@dataclass(frozen=True)
class Reading:
    """How the classifier reads a name: its characters, how much of it, and the lexicon beside them."""

    vocab: list[str]
    max_len: int
    keep_end: bool
    lexicon: Lexicon | None


def load_speller_from(path: Path) -> tuple[SpellerNet, int]:
    """The speller of an artifact folder or a training checkpoint, and the longest word it reads."""
    if path.is_dir():
        model, manifest = load_speller_artifact(path)
        return model, manifest["limits"]["max_word_len"]
    model, state = load_speller(path)
    return model, state["max_len"]


def load_classifier_from(paths: list[Path]) -> tuple[nn.Module, Reading]:
    """The classifier of an artifact folder, or the average of training checkpoints, and how it reads names."""
    if len(paths) == 1 and paths[0].is_dir():
        model, manifest = load_classifier_artifact(paths[0])
        spec = manifest.get("lexicon")
        lexicon = read_lexicon(paths[0] / spec["file"]) if spec else None
        return model, Reading(manifest["vocab"], manifest["limits"]["max_len"], manifest["keep_end"], lexicon)
    loaded = [load_classifier(p) for p in paths]
    members = [m for m, _ in loaded]
    state = loaded[0][1]
    lexicon = next((v for _, s in loaded if (v := checkpoint_lexicon(s)) is not None), None)
    model = members[0] if len(members) == 1 else NameClassifierEnsemble(members).eval()
    return model, Reading(state["vocab"], state["max_len"], state["keep_end"], lexicon)


def create_app(speller_path: Path, classifier_paths: list[Path]) -> FastAPI:
    speller, max_len = load_speller_from(speller_path)
    classifier, reading = load_classifier_from(classifier_paths)
    char_id = {ch: i for i, ch in enumerate(reading.vocab)}
    lexicon = reading.lexicon
    one_at_a_time = threading.Lock()  # the lab's server handled one request, then the next
    app = FastAPI()

    @app.get("/ready")
    def ready() -> dict:
        return {"status": "ready"}

    @app.post("/correct")
    def correct_endpoint(body: dict) -> dict:
        word = body["text"]
        with one_at_a_time, torch.no_grad():
            (fixed,) = correct(speller, [word.lower()], max_len)
        return {"results": [{"text": fixed}]}

    @app.post("/classify")
    def classify_endpoint(body: dict) -> dict:
        name = clip(normalise(body["text"]), reading.max_len, reading.keep_end) or "?"
        with one_at_a_time, torch.no_grad():
            ids, lengths = encode([name], char_id)
            features = lexicon_tensor([name], lexicon, ids.size(1)) if lexicon is not None else None
            best = int(classifier(ids, lengths, features).argmax(dim=1))
        return {"results": [{"label": LABELS[best]}]}

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--speller", type=Path, default=Path("models/speller"), help="artifact folder or best.pt")
    parser.add_argument(
        "--classifier",
        type=Path,
        nargs="+",
        default=[Path("models/classifier")],
        help="artifact folder or best.pt files",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    app = create_app(args.speller, args.classifier)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
