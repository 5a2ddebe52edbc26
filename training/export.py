"""Export a trained model to ONNX with its manifest.

    python -m training.export speller --checkpoint runs/speller/best.pt --out models/speller [--int8]
    python -m training.export classifier --checkpoint runs/classifier/best.pt --out models/classifier
    python -m training.export poet --checkpoint runs/poet/best.pt --out models/poet

The manifest is the contract with `app/`: vocabulary, special ids, graph input/output names and
shapes, limits, data sources, measured quality and the sha256 of every file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import nn

from training import poet_data
from training.classifier import checkpoint_lexicon
from training.classifier_model import NameClassifier, NameClassifierEnsemble
from training.poet_model import PoetLM
from training.speller_data import sha256_file
from training.speller_model import Speller, attention

OPSET = 17


def _frozen(weights: torch.Tensor) -> nn.Parameter:
    """A copy of part of a weight matrix as a parameter of its own: the exporter writes it as an initializer,
    which the int8 quantizer quantizes (a slice of the whole matrix would run at every call, in float32)."""
    return nn.Parameter(weights.detach().clone(), requires_grad=False)


class SpellerEncoder(nn.Module):
    """src, src_len → what every decoder step reads of each word, and the decoder's first h and c.

    The decoder's `combine` layer reads [state; context], and the context is an attention-weighted sum of the
    encoder states (memory): so its context half can be applied to each encoder state once, here (the values
    [B, T, H]), instead of to each beam row's context at every step. Same numbers up to rounding."""

    def __init__(self, model: Speller) -> None:
        super().__init__()
        self.model = model
        self.combine_context = _frozen(model.combine.weight[:, model.combine.out_features :])

    def forward(self, src: torch.Tensor, src_len: torch.Tensor) -> tuple[torch.Tensor, ...]:
        memory, keys, h, c = self.model.encode(src, src_len)
        return memory @ self.combine_context.T, keys, h, c


class SpellerDecoderStep(nn.Module):
    """One step for a batch of rows: token [B] → logits [B, V], with h and c in and out: Speller.decode with
    L = 1 (eval mode), reading the encoder's values (SpellerEncoder) where decode reads memory. The encoder
    outputs (values, keys, bias) come once per word; the rows are each word's live rows, consecutive, and
    attention reads them in equal groups (forward's `slots`)."""

    def __init__(self, model: Speller) -> None:
        super().__init__()
        self.model = model
        self.combine_state = _frozen(model.combine.weight[:, : model.combine.out_features])

    def cell(self, token: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The decoder LSTM's step → its output [B, H] and the new h, c [1, B, H]."""
        y, (h, c) = self.model.decoder(self.model.embed(token)[:, None], (h, c))
        return y[:, 0], h, c

    def forward(
        self,
        token: torch.Tensor,
        h: torch.Tensor,
        c: torch.Tensor,
        values: torch.Tensor,
        keys: torch.Tensor,
        bias: torch.Tensor,
        slots: torch.Tensor,
        slot_rows: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """The rows are a word's live hypotheses only (since speller 1.6.0): each row's place in the layout of
        equal groups that attention reads, [words × widest word's rows], is `slots` [B], and each place of that
        layout reads the row `slot_rows` [words × widest]: its own, or for a place no row fills its word's
        first row. So the LSTM, combine and the output layer never compute a padding row."""
        y, h, c = self.cell(token, h, c)
        weights = attention(y[slot_rows], keys, bias)
        context = torch.bmm(weights, values).reshape(-1, y.size(1))[slots]  # through combine's context half
        mixed = torch.tanh(y @ self.combine_state.T + context + self.model.combine.bias)
        return self.model.out(mixed), h, c


class SpellerDecoderStepTable(SpellerDecoderStep):
    """The same step with the LSTM cell written out, its input half a table: a character's embedding through the
    LSTM's input weights, plus both biases, is one of V rows [V, 4H] computed here once, so a step gathers a row
    where the LSTM multiplies. The int8 graph is quantized from this one: ONNX Runtime's quantized LSTM op took
    3.1 µs a row where the int8 product of the recurrent half takes 1.4 (its profiler, one core), and the step
    as a whole runs 7-14% faster at 256-1,024 rows (docs/design.md). The gates are reordered to [i, f, o, g], so
    that one Sigmoid covers three of them."""

    def __init__(self, model: Speller) -> None:
        super().__init__(model)
        lstm, hidden = model.decoder, model.decoder.hidden_size
        order = torch.cat([torch.arange(0, 2 * hidden), torch.arange(3 * hidden, 4 * hidden),
                           torch.arange(2 * hidden, 3 * hidden)])  # PyTorch's [i, f, g, o] → [i, f, o, g]  # fmt: skip
        table = model.embed.weight @ lstm.weight_ih_l0.T + lstm.bias_ih_l0 + lstm.bias_hh_l0
        self.input_table = _frozen(table[:, order])
        self.recurrent = _frozen(lstm.weight_hh_l0[order])

    def cell(self, token: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hidden = self.recurrent.size(1)
        gates = self.input_table[token] + h[0] @ self.recurrent.T
        sigmoid, g = gates.split([3 * hidden, hidden], dim=1)
        i, f, o = torch.sigmoid(sigmoid).split([hidden, hidden, hidden], dim=1)
        c = f * c[0] + i * torch.tanh(g)
        y = o * torch.tanh(c)
        return y, y[None], c[None]


SPELLER_ENCODER_IO = {
    "inputs": {"src": (["batch", "src_len"], "int64"), "src_len": (["batch"], "int64")},
    "outputs": {
        "values": (["batch", "src_len", "hidden"], "float32"),
        "keys": (["batch", "src_len", "hidden"], "float32"),
        "h0": ([1, "batch", "hidden"], "float32"),
        "c0": ([1, "batch", "hidden"], "float32"),
    },
}
SPELLER_DECODER_IO = {
    "inputs": {
        "token": (["batch"], "int64"),
        "h": ([1, "batch", "hidden"], "float32"),
        "c": ([1, "batch", "hidden"], "float32"),
        "values": (["words", "src_len", "hidden"], "float32"),
        "keys": (["words", "src_len", "hidden"], "float32"),
        "bias": (["words", "src_len"], "float32"),
        "slots": (["batch"], "int64"),
        "slot_rows": (["slots"], "int64"),
    },
    "outputs": {
        "logits": (["batch", "vocab"], "float32"),
        "h_out": ([1, "batch", "hidden"], "float32"),
        "c_out": ([1, "batch", "hidden"], "float32"),
    },
}


def precision_lists(roles: list[str], graphs: dict[str, Path]) -> dict[str, list[str]]:
    """The manifest's "precision": each precision's graphs, one per role in `roles` and in its order (what the
    service reads, app.runtime.sessions.choose_precision); int8 only when every role has its `<role>_int8` graph."""
    lists = {"float32": roles}
    if all(f"{role}_int8" in graphs for role in roles):
        lists["int8"] = [f"{role}_int8" for role in roles]
    return lists


def _dynamic_axes(io: dict) -> dict[str, dict[int, str]]:
    axes = {}
    for group in ("inputs", "outputs"):
        for name, (shape, _) in io[group].items():
            axes[name] = {i: dim for i, dim in enumerate(shape) if dim in ("batch", "words", "src_len", "slots")}
    return axes


def _export(module: nn.Module, example: tuple[torch.Tensor, ...], io: dict, path: Path) -> None:
    torch.onnx.export(
        module,
        example,
        str(path),
        input_names=list(io["inputs"]),
        output_names=list(io["outputs"]),
        dynamic_axes=_dynamic_axes(io),
        opset_version=OPSET,
        dynamo=False,  # the legacy exporter fuses each LSTM into one ONNX LSTM node (faster in ORT)
    )
    onnx.checker.check_model(onnx.load(str(path)))


def _io_spec(io: dict) -> dict:
    return {
        group: [{"name": n, "shape": shape, "dtype": dtype} for n, (shape, dtype) in io[group].items()]
        for group in ("inputs", "outputs")
    }


def read_summary(run_dir: Path) -> dict:
    """The training run's summary.json, or nothing for a run that wrote none."""
    path = run_dir / "summary.json"
    return json.loads(path.read_text()) if path.exists() else {}


# What the benches write into a manifest: measured quality, tuned decoding, int8 against float32.
MEASURED = ("quality", "decoding", "quantization")


def weights_digest(path: Path) -> str | None:
    """sha256 of a graph's weights (its initializers' values, whatever their names and order), or None if there
    is no such file: a graph exported anew from the same weights has the same digest, though not the same bytes."""
    if not path.exists():
        return None
    arrays = [numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer]
    digest = hashlib.sha256()
    for blob in sorted(f"{a.dtype}{a.shape}".encode() + a.tobytes() for a in arrays):
        digest.update(blob)
    return digest.hexdigest()


def write_manifest(out: Path, manifest: dict, weights: str, previous_weights: str | None) -> dict:
    """Write out/manifest.json. Measured quality and tuned decoding belong to the benches: they are carried over
    from the manifest already there only when `weights`, the graph that holds the trained weights, holds the
    same weights as before the export (`previous_weights`, its weights_digest then)."""
    previous = out / "manifest.json"
    if previous.exists() and previous_weights is not None and previous_weights == weights_digest(out / weights):
        old = json.loads(previous.read_text())
        manifest.update({key: old[key] for key in MEASURED if key in old})
    previous.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


def load_speller(checkpoint: Path) -> tuple[Speller, dict]:
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = Speller(**state["config"])
    model.load_state_dict(state["state_dict"])
    return model.eval(), state


def quantize_int8(source: Path, target: Path, op_types: list[str] | None = None) -> None:
    """The graph at `source` with int8 weights, at `target`: ONNX Runtime's dynamic quantization (MatMul and
    LSTM weights int8, activations quantized at run time; `op_types` narrows which ops). About twice as fast
    on a CPU with VNNI; what it costs in accuracy is measured by bench/speller_int8.py, not assumed. Its LSTM
    op runs on the CPU only, so a GPU keeps the float32 graph."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(source, target, weight_type=QuantType.QInt8, op_types_to_quantize=op_types)
    onnx.checker.check_model(onnx.load(str(target)))


def with_int8_copies(paths: dict[str, Path], int8: bool) -> dict[str, Path]:
    """`paths` (graph name → float32 file), and with `int8` each graph's int8 copy beside it as `<name>_int8`
    (file `<stem>.int8.onnx`). Without, any int8 copy an earlier export left is removed: it would hold other
    weights."""
    paths = dict(paths)
    for name, path in list(paths.items()):
        if int8:
            paths[f"{name}_int8"] = path.with_suffix(".int8.onnx")
            quantize_int8(path, paths[f"{name}_int8"])
        else:
            path.with_suffix(".int8.onnx").unlink(missing_ok=True)
    return paths


def example_words() -> tuple[torch.Tensor, torch.Tensor]:
    """What the exports trace with: two words of three and four characters, ids [2, 4] padded at the end and
    their lengths [2] (the graphs fix neither the number of words nor their length)."""
    return torch.tensor([[5, 6, 7, 0], [8, 9, 10, 11]]), torch.tensor([3, 4])


def export_decoder_step(step: SpellerDecoderStep, path: Path) -> None:
    """A decoder step module's graph at `path`, traced on two words of three rows each (so that the graph fixes
    neither the number of words nor the rows per word), all of them live."""
    with torch.no_grad():
        values, keys, h, c = SpellerEncoder(step.model)(*example_words())
        h, c = h.repeat_interleave(3, dim=1), c.repeat_interleave(3, dim=1)
        token, bias = torch.tensor([1, 1, 1, 1, 1, 1]), torch.zeros(2, 4)
        slots = torch.arange(6)  # every row live: each in its own place
        _export(step.eval(), (token, h, c, values, keys, bias, slots, slots), SPELLER_DECODER_IO, path)


def export_speller(model: Speller, out: Path, int8: bool = False) -> dict[str, Path]:
    """Write encoder.onnx and decoder_step.onnx for `model` into `out`, and with `int8` also the int8 graphs
    (encoder.int8.onnx, decoder_step.int8.onnx), which the service runs on a CPU. The int8 step is quantized
    from SpellerDecoderStepTable's graph, the float32 one is the LSTM op's: it runs on a GPU, and it holds each
    trained weight as it is, which training/onnx_weights.py reads back (the table is a product of two)."""
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    encoder_path, decoder_path = out / "encoder.onnx", out / "decoder_step.onnx"
    # The exporter restores each wrapper's training flag afterwards, recursively: a wrapper left in
    # train mode would switch the model's dropout back on for whoever uses it next.
    with torch.no_grad():
        _export(SpellerEncoder(model).eval(), example_words(), SPELLER_ENCODER_IO, encoder_path)
    export_decoder_step(SpellerDecoderStep(model), decoder_path)
    paths = with_int8_copies({"encoder": encoder_path, "decoder_step": decoder_path}, int8)
    if int8:  # the decoder's int8 graph is quantized from the table step's instead
        with tempfile.TemporaryDirectory() as tmp:
            table_path = Path(tmp) / "decoder_step_table.onnx"
            export_decoder_step(SpellerDecoderStepTable(model), table_path)
            # MatMul only: the table stays float32, so a gathered row is a copy
            quantize_int8(table_path, paths["decoder_step_int8"], op_types=["MatMul"])
    return paths


def write_speller_artifact(checkpoint: Path, out: Path, version: str, int8: bool = False) -> dict:
    model, state = load_speller(checkpoint)
    run_dir = checkpoint.parent
    served = "encoder.int8.onnx" if int8 else "encoder.onnx"  # what the measured quality was measured on
    previous_weights = weights_digest(out / served)
    paths = export_speller(model, out, int8)
    shutil.copyfile(run_dir / "dictionary.txt", out / "dictionary.txt")
    summary = read_summary(run_dir)
    vocab = state["vocab"]
    manifest = {
        "name": "speller",
        "version": version,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "architecture": "character encoder-decoder: forward + reversed LSTM encoder, Luong attention, LSTM decoder",
        "config": state["config"],
        # On a CPU the service runs the int8 graphs when there are any, on a GPU the float32 ones.
        "precision": precision_lists(["encoder", "decoder_step"], paths),
        "training": {
            "best_epoch": state["epoch"],
            "valid": state["valid"],
            "args": state["args"],
            "pairs": {k: summary.get(k) for k in ("train_pairs", "valid_pairs", "heldout_pairs")},
        },
        "data": summary.get("sources", {}),
        "vocab": vocab,
        "special_tokens": {"pad": 0, "sos": 1, "eos": 2, "unk": 3},
        "limits": {"max_word_len": state["max_len"], "max_decode_steps": state["max_len"] + 1},
        "graphs": {
            name: {"file": path.name, **_io_spec(SPELLER_ENCODER_IO if "encoder" in name else SPELLER_DECODER_IO)}
            for name, path in paths.items()
        },
        "dictionary": "dictionary.txt",
        "quality": {},
        "files": {},
    }
    manifest["files"] = {
        name: sha256_file(out / name) for name in [*(p.name for p in paths.values()), "dictionary.txt"]
    }
    return write_manifest(out, manifest, served, previous_weights)


class ClassifierGraph(nn.Module):
    """Names → class probabilities: the softmax is in the graph, so serving only reads them."""

    def __init__(self, model: NameClassifier | NameClassifierEnsemble) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, lexicon: torch.Tensor | None = None) -> torch.Tensor:
        return torch.softmax(self.model(ids, lengths, lexicon), dim=-1)


LEXICON_FILE = "lexicon.tsv"
LEXICON_LICENSE = "LEXICON_LICENSE"  # WordNet's licence asks that its notice go with what is made from it


def classifier_io(lexicon: int) -> dict:
    inputs = {"ids": (["batch", "src_len"], "int64"), "lengths": (["batch"], "int64")}
    if lexicon:
        inputs["lexicon"] = (["batch", "src_len", lexicon], "float32")
    return {"inputs": inputs, "outputs": {"probs": (["batch", "classes"], "float32")}}


def load_classifier(checkpoint: Path) -> tuple[NameClassifier, dict]:
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
        _export(ClassifierGraph(model.eval()).eval(), example, classifier_io(lexicon), path)
    return path


def write_classifier_artifact(
    checkpoints: Path | list[Path], out: Path, version: str, storage: str = "int8", int8: bool = False
) -> dict:
    """One checkpoint, or several trained alike (same vocabulary and limits) exported as one averaging graph, its
    weights stored as `storage` (int8 by default: a quarter of the file; the service folds them back to float32),
    and with `int8` also classifier.int8.onnx, ONNX Runtime's dynamic quantization, for a CPU.
    bench/classifier_quality.py measures what is served."""
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
    if store := WEIGHT_STORAGE[storage]:
        store(path)
    files = {p.name: sha256_file(p) for p in paths.values()}
    lexicon_spec = {}
    for stale in (out / LEXICON_FILE, out / LEXICON_LICENSE, out / "lexicon.txt"):  # lexicon.txt: before the table
        stale.unlink(missing_ok=True)
    if channels:
        state_with = next(s for _, s in loaded if s.get("lexicon"))
        lexicon = checkpoint_lexicon(state_with)  # rebuilt from its source, checked against what was learned
        assert lexicon is not None
        (out / LEXICON_FILE).write_text(lexicon.table(), encoding="utf-8")
        files[LEXICON_FILE] = sha256_file(out / LEXICON_FILE)
        if lexicon.license is not None:
            shutil.copyfile(lexicon.license, out / LEXICON_LICENSE)
            files[LEXICON_LICENSE] = sha256_file(out / LEXICON_LICENSE)
        lexicon_spec = {"lexicon": {
            "file": LEXICON_FILE, "source": state_with["lexicon"]["path"], "channels": channels,
            "names": [*lexicon.names, "known"],
            "features": "at each character of a word the table has (a word is a run of letters, lowercased; a word "
            "it lacks is tried again with each suffix rule of the table's header), the word's numbers and 1; "
            "elsewhere zeros",
            **({"license": LEXICON_LICENSE} if lexicon.license is not None else {}),
        }}  # fmt: skip
    summary = read_summary(checkpoints[0].parent)
    manifest = {
        "name": "classifier",
        "version": version,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "architecture": (
            "character LSTMs over the name, forward and reversed: final states + max over time, ReLU layer"
            + ("; beside each character's embedding, what a lexicon knows of its word" if channels else "")
            + (f"; {len(loaded)} such models, their probabilities averaged" if len(loaded) > 1 else "")
        ),
        "config": [s["config"] for _, s in loaded],
        "weights": f"{storage} in classifier.onnx, float32 in compute"
        + ("; classifier.int8.onnx: int8, activations quantized at run time" if int8 else ""),
        # On a CPU the service runs the *_int8 graph when there is one, on a GPU the float one.
        "precision": precision_lists(["classifier"], paths),
        "training": [{"best_epoch": s["epoch"], "valid": s["valid"], "args": s["args"]} for _, s in loaded],
        "ensemble_members": len(members),
        "data": summary.get("sources", {}),
        "labels": state["labels"],
        "vocab": state["vocab"],
        "special_tokens": {"pad": 0, "unk": 1},
        # What serving does to a name before the graph sees it, in this order.
        "preprocessing": ["percent-decode (urllib.parse.unquote)", "'_' → ' '", "Unicode NFC", "strip"],
        "limits": {"max_len": state["max_len"]},
        "keep_end": state["keep_end"],
        **lexicon_spec,
        "graphs": {name: {"file": p.name, **_io_spec(classifier_io(channels))} for name, p in paths.items()},
        "quality": {},
        "files": files,
    }
    return write_manifest(out, manifest, served, previous_weights)


class PoetStep(nn.Module):
    """One character for a batch of poems: (token, h, c) → (logits, h, c)."""

    def __init__(self, model: PoetLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, token: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.model.step(token, h, c)


def poet_io(config: dict) -> dict:
    state = [config["layers"], "batch", config["hidden"]]
    return {
        "inputs": {"token": (["batch"], "int64"), "h": (state, "float32"), "c": (state, "float32")},
        "outputs": {
            "logits": (["batch", config["vocab_size"]], "float32"),
            "h_out": (state, "float32"),
            "c_out": (state, "float32"),
        },
    }


def _save_rewritten(model: onnx.ModelProto, path: Path, initializers: list, first_nodes: list) -> None:
    """The graph with `initializers` in place of its own and `first_nodes` ahead of its nodes, checked, saved."""
    graph = model.graph
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(first_nodes + nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def store_fp16(path: Path, min_elements: int = 1024) -> None:
    """Store the graph's large float32 weights as float16, each followed by a Cast back to float32.

    The file halves; ONNX Runtime folds the Casts when it loads the graph, so it still computes in float32
    (its CPU LSTM has no float16 kernel) and runs as fast as before. Only the rounding of the weights changes.
    """
    model = onnx.load(str(path))
    graph = model.graph
    casts, kept = [], []
    for init in graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype != np.float32 or array.size < min_elements:
            kept.append(init)
            continue
        kept.append(numpy_helper.from_array(array.astype(np.float16), f"{init.name}__fp16"))
        casts.append(helper.make_node("Cast", [f"{init.name}__fp16"], [init.name], to=onnx.TensorProto.FLOAT))
    _save_rewritten(model, path, kept, casts)


def store_int8(path: Path, min_elements: int = 1024) -> None:
    """Store the graph's large weights (the embedding, LSTM and output matrices) as int8 with one scale per
    output channel, each followed by a DequantizeLinear back to float32.

    A quarter of the float32 file. ONNX Runtime folds the DequantizeLinear nodes into float32 weights when it
    loads the graph with QDQ fusion off (app/runtime/sessions.py does that for this graph), so it computes in float32
    on any provider, a GPU's included; only the rounding of the weights changes (measured by bench/poet_quality.py).
    """
    model = onnx.load(str(path))
    graph = model.graph
    # (op, input index) → the weight's output-channel axis; biases and small tensors stay float32.
    channel_axis = {("LSTM", 1): 1, ("LSTM", 2): 1, ("MatMul", 1): 1, ("Gather", 0): 0}
    use = {name: (node.op_type, i) for node in graph.node for i, name in enumerate(node.input)}
    dequantize, kept = [], []
    for init in graph.initializer:
        weights = numpy_helper.to_array(init)
        axis = channel_axis.get(use.get(init.name, ("", -1)))
        if weights.dtype != np.float32 or weights.size < min_elements or axis is None:
            kept.append(init)
            continue
        others = tuple(a for a in range(weights.ndim) if a != axis)
        scale = (np.abs(weights).max(axis=others) / 127).astype(np.float32)
        scale[scale == 0] = 1
        shape = [1] * weights.ndim
        shape[axis] = -1
        quantized = np.clip(np.round(weights / scale.reshape(shape)), -127, 127).astype(np.int8)
        names = [f"{init.name}__int8", f"{init.name}__scale", f"{init.name}__zero"]
        zero = np.zeros(scale.shape, np.int8)
        kept += [numpy_helper.from_array(x, n) for x, n in zip((quantized, scale, zero), names, strict=True)]
        dequantize.append(helper.make_node("DequantizeLinear", names, [init.name], axis=axis))
    _save_rewritten(model, path, kept, dequantize)


# How a graph file stores its large weights; all compute in float32 (ONNX Runtime folds the conversion at load).
WEIGHT_STORAGE = {"int8": store_int8, "fp16": store_fp16, "fp32": None}


def load_poet(checkpoint: Path) -> tuple[PoetLM, dict]:
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = PoetLM(**state["config"])
    model.load_state_dict(state["state_dict"])
    return model.eval(), state


def export_poet(model: PoetLM, out: Path, storage: str = "int8", int8: bool = False) -> dict[str, Path]:
    """Write poet_step.onnx, its weights stored as `storage` (int8, fp16 or fp32; computed in float32), and with
    `int8` also poet_step.int8.onnx, ONNX Runtime's dynamic quantization of the float32 graph, for a CPU."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "poet_step.onnx"
    h, c = model.initial_state(2)
    with torch.no_grad():
        _export(PoetStep(model.eval()).eval(), (torch.tensor([2, 2]), h, c), poet_io(model.config), path)
    paths = with_int8_copies({"poet_step": path}, int8)  # quantized from the float32 graph, before storage
    if store := WEIGHT_STORAGE[storage]:
        store(path)
    return paths


def write_poet_artifact(checkpoint: Path, out: Path, version: str, storage: str = "int8", int8: bool = False) -> dict:
    model, state = load_poet(checkpoint)
    served = "poet_step.int8.onnx" if int8 else "poet_step.onnx"  # what the measured quality was measured on
    previous_weights = weights_digest(out / served)
    paths = export_poet(model, out, storage, int8)
    summary = read_summary(checkpoint.parent)
    vocab = state["vocab"]
    data = dict(state["data"])
    if "source" not in data and state["args"].get("data") == "None":  # runs from before the field: fetched
        data["source"] = {"package": poet_data.PACKAGE, "tarball_sha256": poet_data.TARBALL_SHA256}
    manifest = {
        "name": "poet",
        "version": version,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "architecture": "character language model: embedding, LSTM, linear; served one character per step",
        "config": state["config"],
        "weights": f"{storage} in poet_step.onnx, float32 in compute"
        + ("; poet_step.int8.onnx: int8, activations quantized at run time" if int8 else ""),
        # On a CPU the service runs the *_int8 graph when there is one, on a GPU the float one.
        "precision": precision_lists(["poet_step"], paths),
        "training": {
            "best_epoch": state["epoch"],
            "valid_perplexity": state["valid_perplexity"],
            "test_perplexity_pytorch": summary.get("test_perplexity"),
            "args": state["args"],
        },
        "data": data,
        "script": data.get("script", "simplified"),
        "vocab": vocab,
        "special_tokens": {name.strip("<>"): vocab.index(name) for name in ("<pad>", "<unk>", "<bos>", "<eos>")},
        "limits": {"max_chars": 200},
        "graphs": {name: {"file": path.name, **_io_spec(poet_io(model.config))} for name, path in paths.items()},
        "quality": {},
        "files": {path.name: sha256_file(path) for path in paths.values()},
    }
    return write_manifest(out, manifest, served, previous_weights)


WRITERS = {"speller": write_speller_artifact, "classifier": write_classifier_artifact, "poet": write_poet_artifact}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=sorted(WRITERS))
    parser.add_argument(
        "--checkpoint", type=Path, nargs="+", help="default: runs/<model>/best.pt; the classifier takes several"
    )
    parser.add_argument("--out", type=Path, help="default: models/<model>")
    parser.add_argument("--version", default="1.0.0")
    parser.add_argument(
        "--storage",
        choices=sorted(WEIGHT_STORAGE),
        default="int8",
        help="poet, classifier: how the graph file stores its weights (computed in float32)",
    )
    parser.add_argument("--int8", action="store_true", help="also int8 graphs for a CPU (dynamic quantization)")
    args = parser.parse_args(argv)
    checkpoint = args.checkpoint or [Path("runs") / args.model / "best.pt"]
    if args.model in ("speller", "poet"):
        (checkpoint,) = checkpoint
    args.out = args.out or Path("models") / args.model
    if args.model == "poet":
        manifest = write_poet_artifact(checkpoint, args.out, args.version, storage=args.storage, int8=args.int8)
    elif args.model == "speller":
        manifest = write_speller_artifact(checkpoint, args.out, args.version, int8=args.int8)
    else:
        manifest = write_classifier_artifact(checkpoint, args.out, args.version, storage=args.storage, int8=args.int8)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v[:12]}" for k, v in manifest["files"].items()))


if __name__ == "__main__":
    main()
