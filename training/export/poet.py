"""The poet's artifact: poet_step.onnx (one character for a batch of poems), its int8 copy, and the manifest."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from training import poet_data
from training.export.graphs import IO, export_graph
from training.export.manifest import file_digests, graph_specs, header, read_summary, write_manifest
from training.export.onnx_passes import store_weights, weights_digest, with_int8_copies
from training.poet_model import PoetLM


class PoetStep(nn.Module):
    """One character for a batch of poems: (token, h, c) → (logits, h, c)."""

    def __init__(self, model: PoetLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, token: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.model.step(token, h, c)


def poet_io(config: dict) -> IO:
    state = [config["layers"], "batch", config["hidden"]]
    return {
        "inputs": {"token": (["batch"], "int64"), "h": (state, "float32"), "c": (state, "float32")},
        "outputs": {
            "logits": (["batch", config["vocab_size"]], "float32"),
            "h_out": (state, "float32"),
            "c_out": (state, "float32"),
        },
    }


def load_poet(checkpoint: Path) -> tuple[PoetLM, dict]:
    """A training checkpoint's poet, in eval mode, and the checkpoint itself."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = PoetLM(**state["config"])
    model.load_state_dict(state["state_dict"])
    return model.eval(), state


def export_poet(model: PoetLM, out: Path, storage: str = "int8", int8: bool = False) -> dict[str, Path]:
    """Write poet_step.onnx, its weights stored as `storage` (int8, fp16 or fp32; computed in float32), and with
    `int8` also poet_step.int8.onnx, ONNX Runtime's dynamic quantization of the float32 graph, for a CPU."""
    h, c = model.initial_state(2)
    return export_step(PoetStep(model.eval()).eval(), (torch.tensor([2, 2]), h, c), poet_io(model.config), out,
                       storage, int8)  # fmt: skip


def export_step(
    step: nn.Module, example: tuple[torch.Tensor, ...], io: IO, out: Path, storage: str, int8: bool
) -> dict[str, Path]:
    """A poet's step module as out/poet_step.onnx (weights stored as `storage`) and with `int8` its int8 copy."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "poet_step.onnx"
    with torch.no_grad():
        export_graph(step, example, io, path)
    paths = with_int8_copies({"poet_step": path}, int8)  # quantized from the float32 graph, before storage
    store_weights(path, storage)
    return paths


def write_poet_artifact(checkpoint: Path, out: Path, version: str, storage: str = "int8", int8: bool = False) -> dict:
    """models/poet from a training run's checkpoint: the step graph(s) and the manifest."""
    model, state = load_poet(checkpoint)
    served = "poet_step.int8.onnx" if int8 else "poet_step.onnx"  # what the measured quality was measured on
    previous_weights = weights_digest(out / served)
    paths = export_poet(model, out, storage, int8)
    architecture = "character language model: embedding, LSTM, linear; served one character per step"
    manifest = poet_manifest("poet", version, architecture, checkpoint, state, paths, storage, poet_io(model.config))
    return write_manifest(out, manifest, served, previous_weights)


def poet_manifest(
    name: str, version: str, architecture: str, checkpoint: Path, state: dict, paths: dict[str, Path], storage: str,
    io: IO, max_chars: int = 200, **extra: object,
) -> dict:  # fmt: skip
    """The manifest of a poet's artifact (poet, poet_transformer): one step graph `poet_step` (and its int8 copy),
    the training run's figures, data, vocabulary and limits; `extra` fields say what differs between them."""
    vocab = state["vocab"]
    data = dict(state["data"])
    if "source" not in data and state["args"].get("data") == "None":  # a run that recorded no source: fetched
        data["source"] = {"package": poet_data.PACKAGE, "tarball_sha256": poet_data.TARBALL_SHA256}
    weights = f"{storage} in poet_step.onnx, float32 in compute" + (
        "; poet_step.int8.onnx: int8, activations quantized at run time" if "poet_step_int8" in paths else ""
    )
    return {
        **header(name, version, architecture, state["config"], paths, ["poet_step"], weights),
        **extra,
        "training": {
            "best_epoch": state["epoch"],
            "valid_perplexity": state["valid_perplexity"],
            "test_perplexity_pytorch": read_summary(checkpoint.parent).get("test_perplexity"),
            "args": state["args"],
        },
        "data": data,
        "script": data.get("script", "simplified"),
        "vocab": vocab,
        "special_tokens": {name.strip("<>"): vocab.index(name) for name in ("<pad>", "<unk>", "<bos>", "<eos>")},
        "limits": {"max_chars": max_chars},
        "graphs": graph_specs(paths, lambda _: io),
        "quality": {},
        "files": file_digests(paths.values()),
    }
