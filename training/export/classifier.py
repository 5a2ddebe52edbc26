"""The classifier's artifact: classifier.onnx (one model, or several averaged in one graph), its int8 copy, the
lexicon table the model reads, and the manifest."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from torch import nn

from training.classifier import checkpoint_lexicon
from training.classifier_model import NameClassifier, NameClassifierEnsemble
from training.export.graphs import IO, example_words, export_graph
from training.export.manifest import file_digests, graph_specs, header, read_summary, write_manifest
from training.export.onnx_passes import store_weights, weights_digest, with_int8_copies
from training.speller_data import sha256_file

LEXICON_FILE = "lexicon.tsv"
LEXICON_LICENSE = "LEXICON_LICENSE"  # WordNet's licence asks that its notice go with what is made from it


class ClassifierGraph(nn.Module):
    """Names → class probabilities: the softmax is in the graph, so serving only reads them."""

    def __init__(self, model: NameClassifier | NameClassifierEnsemble) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, lexicon: torch.Tensor | None = None) -> torch.Tensor:
        return torch.softmax(self.model(ids, lengths, lexicon), dim=-1)


def classifier_io(lexicon: int) -> IO:
    inputs = {"ids": (["batch", "src_len"], "int64"), "lengths": (["batch"], "int64")}
    if lexicon:
        inputs["lexicon"] = (["batch", "src_len", lexicon], "float32")
    return {"inputs": inputs, "outputs": {"probs": (["batch", "classes"], "float32")}}


def load_classifier(checkpoint: Path) -> tuple[NameClassifier, dict]:
    """A training checkpoint's classifier, in eval mode, and the checkpoint itself."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = NameClassifier(**state["config"])
    model.load_state_dict(state["state_dict"])
    return model.eval(), state


def export_classifier(model: NameClassifier | NameClassifierEnsemble, out: Path, lexicon: int = 0) -> Path:
    """The float32 graph. `lexicon`: the channels of the lexicon input (0: the graph has none), whatever members
    read it."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "classifier.onnx"
    example: tuple[torch.Tensor, ...] = example_words()
    if lexicon:
        example += (torch.rand(2, 4, lexicon),)
    with torch.no_grad():
        export_graph(ClassifierGraph(model.eval()).eval(), example, classifier_io(lexicon), path)
    return path


def write_lexicon(out: Path, loaded: list[tuple[NameClassifier, dict]], channels: int) -> dict:
    """The lexicon table (and its licence) the members read, into `out`; the manifest's "lexicon" block, or
    nothing when no member reads one. A table an earlier export left is removed either way."""
    for stale in (out / LEXICON_FILE, out / LEXICON_LICENSE, out / "lexicon.txt"):  # lexicon.txt: before the table
        stale.unlink(missing_ok=True)
    if not channels:
        return {}
    state = next(s for _, s in loaded if s.get("lexicon"))
    lexicon = checkpoint_lexicon(state)  # rebuilt from its source, checked against what was learned
    assert lexicon is not None
    (out / LEXICON_FILE).write_text(lexicon.table(), encoding="utf-8")
    if lexicon.license is not None:
        shutil.copyfile(lexicon.license, out / LEXICON_LICENSE)
    return {"lexicon": {
        "file": LEXICON_FILE, "source": state["lexicon"]["path"], "channels": channels,
        "names": [*lexicon.names, "known"],
        "features": "at each character of a word the table has (a word is a run of letters, lowercased; a word "
        "it lacks is tried again with each suffix rule of the table's header), the word's numbers and 1; "
        "elsewhere zeros",
        **({"license": LEXICON_LICENSE} if lexicon.license is not None else {}),
    }}  # fmt: skip


def write_classifier_artifact(
    checkpoints: Path | list[Path], out: Path, version: str, storage: str = "int8", int8: bool = False
) -> dict:
    """One checkpoint, or several trained alike (same vocabulary and limits) exported as one averaging graph, its
    weights stored as `storage` (int8 by default: a quarter of the file; the service folds them back to float32),
    and with `int8` also classifier.int8.onnx, ONNX Runtime's dynamic quantization, for a CPU.
    training/measure.py measures what is served."""
    checkpoints = checkpoints if isinstance(checkpoints, list) else [checkpoints]
    loaded = [load_classifier(c) for c in checkpoints]
    state = loaded[0][1]
    shared = ("vocab", "max_len", "keep_end")
    if any(tuple(s[k] for k in shared) != tuple(state[k] for k in shared) for _, s in loaded):
        raise ValueError("ensemble members must share vocabulary, max_len and keep_end")
    members = [m for m, _ in loaded]
    lexicons = {(s.get("lexicon") or {}).get("sha256") for _, s in loaded} - {None}
    if len(lexicons) > 1:
        raise ValueError("ensemble members read different lexicons")
    channels = max(m.config.get("lexicon", 0) for m in members)
    served = "classifier.int8.onnx" if int8 else "classifier.onnx"  # what the measured quality was measured on
    previous_weights = weights_digest(out / served)
    model = members[0] if len(members) == 1 else NameClassifierEnsemble(members)
    path = export_classifier(model, out, channels)  # float32 first: the int8 graph is quantized from it
    paths = with_int8_copies({"classifier": path}, int8)
    store_weights(path, storage)
    lexicon_spec = write_lexicon(out, loaded, channels)
    files = file_digests(paths.values())
    for name in (LEXICON_FILE, LEXICON_LICENSE):
        if (out / name).exists():
            files[name] = sha256_file(out / name)
    architecture = (
        "character LSTMs over the name, forward and reversed: final states + max over time, ReLU layer"
        + ("; beside each character's embedding, what a lexicon knows of its word" if channels else "")
        + (f"; {len(loaded)} such models, their probabilities averaged" if len(loaded) > 1 else "")
    )
    weights = f"{storage} in classifier.onnx, float32 in compute" + (
        "; classifier.int8.onnx: int8, activations quantized at run time" if int8 else ""
    )
    configs = [s["config"] for _, s in loaded]
    manifest = {
        **header("classifier", version, architecture, configs, paths, ["classifier"], weights),
        "training": [{"best_epoch": s["epoch"], "valid": s["valid"], "args": s["args"]} for _, s in loaded],
        "ensemble_members": len(members),
        "data": read_summary(checkpoints[0].parent).get("sources", {}),
        "labels": state["labels"],
        "vocab": state["vocab"],
        "special_tokens": {"pad": 0, "unk": 1},
        # What serving does to a name before the graph sees it, in this order.
        "preprocessing": ["percent-decode (urllib.parse.unquote)", "'_' → ' '", "Unicode NFC", "strip"],
        "limits": {"max_len": state["max_len"]},
        "keep_end": state["keep_end"],
        **lexicon_spec,
        "graphs": graph_specs(paths, lambda _: classifier_io(channels)),
        "quality": {},
        "files": files,
    }
    return write_manifest(out, manifest, served, previous_weights)
