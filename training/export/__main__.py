"""Export a trained model to ONNX with its manifest.

    python -m training.export speller --checkpoint runs/speller/best.pt --out models/speller [--int8]
    python -m training.export classifier --checkpoint runs/classifier/best.pt --out models/classifier
    python -m training.export poet --checkpoint runs/poet/best.pt --out models/poet
    python -m training.export poet_transformer --checkpoint runs/poet_transformer/best.pt --version 1.0.0

The manifest is the contract with `app/`: vocabulary, special ids, graph input/output names and
shapes, limits, data sources, measured quality and the sha256 of every file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from training.export import (
    write_classifier_artifact,
    write_poet_artifact,
    write_poet_transformer_artifact,
    write_speller_artifact,
)
from training.export.onnx_passes import WEIGHT_STORAGE

MODELS = ("classifier", "poet", "poet_transformer", "speller")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=MODELS)
    parser.add_argument(
        "--checkpoint", type=Path, nargs="+", help="default: runs/<model>/best.pt; the classifier takes several"
    )
    parser.add_argument("--out", type=Path, help="default: models/<model>")
    parser.add_argument("--version", default="1.0.0")
    parser.add_argument(
        "--storage",
        choices=sorted(WEIGHT_STORAGE),
        default="int8",
        help="poets, classifier: how the graph file stores its weights (computed in float32)",
    )
    parser.add_argument("--int8", action="store_true", help="also int8 graphs for a CPU (dynamic quantization)")
    args = parser.parse_args(argv)
    checkpoint = args.checkpoint or [Path("runs") / args.model / "best.pt"]
    if args.model in ("speller", "poet", "poet_transformer"):
        (checkpoint,) = checkpoint
    out = args.out or Path("models") / args.model
    if args.model == "poet":
        manifest = write_poet_artifact(checkpoint, out, args.version, storage=args.storage, int8=args.int8)
    elif args.model == "poet_transformer":
        manifest = write_poet_transformer_artifact(checkpoint, out, args.version, storage=args.storage, int8=args.int8)
    elif args.model == "speller":
        manifest = write_speller_artifact(checkpoint, out, args.version, int8=args.int8)
    else:
        manifest = write_classifier_artifact(checkpoint, out, args.version, storage=args.storage, int8=args.int8)
    print(f"wrote {out}: " + ", ".join(f"{k} {v[:12]}" for k, v in manifest["files"].items()))


if __name__ == "__main__":
    main()
