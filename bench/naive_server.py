"""Peer (d) of bench/serving.py: a naive server as in the original lab code. PyTorch eager on the training
checkpoints, one request at a time, no batching across requests, no ONNX.

    python -m bench.naive_server --port 8000 --speller runs/speller/best.pt

By default its classifier averages the checkpoints the bundled artifact was exported from (the runs its
manifest names). It needs the checkpoints (`make speller-train`, `make classifier-train`, `make
classifier-refit`): they are not in the repository.
Single-text requests only (`{"text": ...}`), what the benchmark sends. Its speller decodes greedily,
less work per word than the service's 16-wide beam with a dictionary prior: a ratio against it is, if
anything, in the naive server's favour.
"""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path

import torch
import uvicorn
from fastapi import FastAPI

from training.classifier import checkpoint_lexicon, clip, encode, lexicon_tensor
from training.classifier_data import LABELS, normalise
from training.classifier_model import NameClassifierEnsemble
from training.export import load_classifier, load_speller
from training.speller import predict as correct


def bundled_classifier_members(models: Path = Path("models")) -> list[Path]:
    """The training checkpoints of the bundled classifier's members, as its manifest records them."""
    manifest = json.loads((models / "classifier" / "manifest.json").read_text())
    return [Path(run["args"]["out"]) / "best.pt" for run in manifest["training"]]


def create_app(speller_path: Path, classifier_paths: list[Path]) -> FastAPI:
    speller, speller_state = load_speller(speller_path)
    loaded = [load_classifier(p) for p in classifier_paths]
    members = [m for m, _ in loaded]
    classifier = members[0] if len(members) == 1 else NameClassifierEnsemble(members).eval()
    state = loaded[0][1]
    char_id = {ch: i for i, ch in enumerate(state["vocab"])}
    lexicon = next((v for _, s in loaded if (v := checkpoint_lexicon(s)) is not None), None)
    one_at_a_time = threading.Lock()  # the lab's server handled one request, then the next
    app = FastAPI()

    @app.get("/ready")
    def ready() -> dict:
        return {"status": "ready"}

    @app.post("/correct")
    def correct_endpoint(body: dict) -> dict:
        word = body["text"]
        with one_at_a_time, torch.no_grad():
            (fixed,) = correct(speller, [word.lower()], speller_state["max_len"])
        return {"results": [{"text": fixed}]}

    @app.post("/classify")
    def classify_endpoint(body: dict) -> dict:
        name = clip(normalise(body["text"]), state["max_len"], state["keep_end"]) or "?"
        with one_at_a_time, torch.no_grad():
            ids, lengths = encode([name], char_id)
            features = lexicon_tensor([name], lexicon, ids.size(1)) if lexicon is not None else None
            best = int(classifier(ids, lengths, features).argmax(dim=1))
        return {"results": [{"label": LABELS[best]}]}

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--speller", type=Path, default=Path("runs/speller/best.pt"))
    parser.add_argument("--classifier", type=Path, nargs="+", default=bundled_classifier_members())
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    app = create_app(args.speller, args.classifier)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
