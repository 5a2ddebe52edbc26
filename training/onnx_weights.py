"""A PyTorch module's weights read back from the ONNX graphs it was exported to.

The bundled artifacts are a complete record of the trained weights: with this, the naive benchmark peer runs the
very weights the service serves (in PyTorch eager), and a model can be exported again without its training
checkpoint, which is not in the repository.

How: the module is exported once more with every parameter element set to a distinct whole number (its flat
position, offset so that no ordinary constant looks like one). Each weight initializer of that export then says
which parameter elements it copied, in which order, whatever the exporter did to them (transposed them, reordered
an LSTM's gates, concatenated its biases); the initializer of the same name in the bundled graph gives those
elements' trained values. A weight the exporter computed from several values, rather than copied, raises.

    python -m training.onnx_weights speller models/speller --out runs/speller_bundled

writes a training run folder for the bundled speller (best.pt, dictionary.txt, summary.json), from which
`make speller-artifact SPELLER_RUN=runs/speller_bundled` exports it again (README, "Retrain, export"). Run it
with the code that exported the artifact: the tagged export must write the graphs the artifact holds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from training.classifier_model import NameClassifier, NameClassifierEnsemble
from training.export import export_classifier, export_speller
from training.speller import VOCAB
from training.speller_model import SpellerNet

# float32 holds every whole number below 2**24 exactly: a pass tags OFFSET + position, below 2**24, and
# parameters past that wait for the next pass (an export each).
OFFSET = 2**23


def graph_weights(path: Path) -> dict[str, np.ndarray]:
    """The float weights of the graph at `path`, by name: its float initializers, and the outputs of the
    DequantizeLinear nodes that read only initializers (weights stored as int8, app/runtime/artifacts.py)."""
    graph = onnx.load(str(path)).graph
    stored = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    weights = {name: value for name, value in stored.items() if value.dtype == np.float32}
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or not all(name in stored for name in node.input if name):
            continue
        quantized, scale, *rest = (stored[name] for name in node.input if name)
        zero = rest[0].astype(np.float32) if rest else np.float32(0)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1) % quantized.ndim
        shape = [-1 if a == axis else 1 for a in range(quantized.ndim)] if scale.ndim else []
        weights[node.output[0]] = (quantized.astype(np.float32) - np.reshape(zero, shape)) * np.reshape(scale, shape)
    return weights


def load_from_onnx(model: nn.Module, export: Callable[[nn.Module, Path], list[Path]], graphs: list[Path]) -> nn.Module:
    """`model` (built with the bundled model's configuration) with its parameters set from `graphs`, the files
    that `export(model, folder)` writes, in the same order. Returns `model` in eval mode."""
    params = list(model.named_parameters())
    sizes = np.array([p.numel() for _, p in params])
    starts = np.concatenate([[0], np.cumsum(sizes)])
    bundled = [graph_weights(path) for path in graphs]
    flat = np.full(starts[-1], np.nan, dtype=np.float32)
    with torch.no_grad():
        trained = [p.detach().clone() for _, p in params]
        try:
            for first, last in _passes(sizes):
                # This pass tags parameters first..last-1 (positions from starts[first]); the others are NaN.
                for i, (_, p) in enumerate(params):
                    tags = torch.arange(starts[i], starts[i + 1], dtype=torch.float64) - starts[first] + OFFSET
                    p.copy_(tags.reshape(p.shape) if first <= i < last else torch.full_like(p, torch.nan))
                with tempfile.TemporaryDirectory() as folder:
                    tagged = export(model.eval(), Path(folder))
                    for tagged_path, weights, path in zip(tagged, bundled, graphs, strict=True):
                        _fill(flat[starts[first] : starts[last]], graph_weights(tagged_path), weights, path)
        finally:
            for (_, p), value in zip(params, trained, strict=True):
                p.copy_(value)
        missing = [name for i, (name, _) in enumerate(params) if np.isnan(flat[starts[i] : starts[i + 1]]).any()]
        if missing:
            raise ValueError(f"{', '.join(map(str, graphs))}: no weights for {', '.join(missing)}")
        for i, (_, p) in enumerate(params):
            p.copy_(torch.from_numpy(flat[starts[i] : starts[i + 1]]).reshape(p.shape))
    return model.eval()


def _passes(sizes: np.ndarray) -> list[tuple[int, int]]:
    """Runs of whole parameters (first, last + 1) of fewer than 2**24 - OFFSET elements each: one export each."""
    limit = 2**24 - OFFSET
    if (sizes >= limit).any():
        raise ValueError(f"a parameter of {sizes.max()} elements: too many to tag exactly in float32")
    passes, first, total = [], 0, 0
    for i, size in enumerate(sizes):
        if total + size >= limit:
            passes.append((first, i))
            first, total = i, 0
        total += size
    return [*passes, (first, len(sizes))]


def _fill(flat: np.ndarray, tagged: dict[str, np.ndarray], bundled: dict[str, np.ndarray], path: Path) -> None:
    """Write into `flat` (one pass's parameters, end to end) the values of `bundled` where `tagged` has tags."""
    for name, tags in tagged.items():
        is_tag = (tags >= OFFSET) & (tags < OFFSET + len(flat)) & (tags == np.round(tags))
        if not is_tag.any():
            continue  # a constant of the graph, or weights of another pass
        if not (is_tag | np.isnan(tags)).all():
            raise ValueError(f"{path}: {name} mixes weights with other values: the exporter computed it")
        if name not in bundled or bundled[name].shape != tags.shape:
            raise ValueError(f"{path}: no weight {name} of shape {tags.shape}: exported by other code")
        position = (tags[is_tag] - OFFSET).astype(np.int64)
        values = bundled[name][is_tag].astype(np.float32)
        seen = ~np.isnan(flat[position])
        if not np.array_equal(flat[position[seen]], values[seen]):
            raise ValueError(f"{path}: {name} disagrees with another copy of the same weights")
        flat[position] = values


def load_speller_artifact(folder: Path) -> tuple[SpellerNet, dict]:
    """The speller of an artifact folder (models/speller) in PyTorch, from its float32 graphs, and its manifest."""
    manifest = json.loads((folder / "manifest.json").read_text())
    if manifest["vocab"] != VOCAB:
        raise ValueError(f"{folder / 'manifest.json'}: a vocabulary other than training/speller.py's")
    graphs = [folder / manifest["graphs"][name]["file"] for name in ("encoder", "decoder_step")]
    model = SpellerNet(**manifest["config"])
    return load_from_onnx(model, lambda m, out: list(export_speller(m, out).values()), graphs), manifest


def load_classifier_artifact(folder: Path) -> tuple[NameClassifier | NameClassifierEnsemble, dict]:
    """The classifier of an artifact folder (models/classifier) in PyTorch, its members averaged as the graph
    averages them, from its float32 graph (int8-stored weights dequantized as ONNX Runtime does), and its
    manifest."""
    manifest = json.loads((folder / "manifest.json").read_text())
    configs = manifest["config"] if isinstance(manifest["config"], list) else [manifest["config"]]
    members = [NameClassifier(**config) for config in configs]
    model = members[0] if len(members) == 1 else NameClassifierEnsemble(members)
    channels = (manifest.get("lexicon") or {}).get("channels", 0)
    graph = folder / manifest["graphs"]["classifier"]["file"]
    return load_from_onnx(model, lambda m, out: [export_classifier(m, out, channels)], [graph]), manifest


def speller_run_from_artifact(folder: Path, out: Path) -> Path:
    """A training run folder (best.pt, dictionary.txt, summary.json) rebuilt from the speller artifact at
    `folder`, as training/speller.py would have written it: what `python -m training.export speller` and the
    speller benches read. Returns the checkpoint's path."""
    model, manifest = load_speller_artifact(folder)
    training = manifest["training"]
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "best.pt"
    torch.save(
        {
            "config": model.config,
            "state_dict": model.state_dict(),
            "vocab": manifest["vocab"],
            "max_len": manifest["limits"]["max_word_len"],
            "epoch": training["best_epoch"],
            "valid": training["valid"],
            "args": training["args"],
            "from_artifact": {"folder": str(folder), "version": manifest["version"], "files": manifest["files"]},
        },
        checkpoint,
    )
    shutil.copyfile(folder / manifest["dictionary"], out / "dictionary.txt")
    summary = {**training["pairs"], "sources": manifest["data"], "from_artifact": str(folder)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return checkpoint


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=["speller"])
    parser.add_argument("artifact", type=Path, help="the artifact folder, e.g. models/speller")
    parser.add_argument("--out", type=Path, required=True, help="the run folder to write, e.g. runs/speller_bundled")
    args = parser.parse_args(argv)
    print(speller_run_from_artifact(args.artifact, args.out))


if __name__ == "__main__":
    main()
