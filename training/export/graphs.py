"""Tracing a PyTorch module to an ONNX graph, and the graph input/output specs the manifests carry."""

from __future__ import annotations

from pathlib import Path

import onnx
import torch
from torch import nn

OPSET = 17
DYNAMIC = ("batch", "words", "src_len", "slots")  # dimension names the graphs leave free

# A graph's inputs and outputs: name → (shape, dtype), a shape's entries numbers or DYNAMIC names.
IO = dict[str, dict[str, tuple[list, str]]]


def frozen(weights: torch.Tensor) -> nn.Parameter:
    """A copy of part of a weight matrix as a parameter of its own: the exporter writes it as an initializer,
    which the int8 quantizer quantizes (a slice of the whole matrix would run at every call, in float32)."""
    return nn.Parameter(weights.detach().clone(), requires_grad=False)


def example_words() -> tuple[torch.Tensor, torch.Tensor]:
    """What the exports trace with: two words of three and four characters, ids [2, 4] padded at the end and
    their lengths [2] (the graphs fix neither the number of words nor their length)."""
    return torch.tensor([[5, 6, 7, 0], [8, 9, 10, 11]]), torch.tensor([3, 4])


def dynamic_axes(io: IO) -> dict[str, dict[int, str]]:
    axes = {}
    for group in ("inputs", "outputs"):
        for name, (shape, _) in io[group].items():
            axes[name] = {i: dim for i, dim in enumerate(shape) if dim in DYNAMIC}
    return axes


def export_graph(module: nn.Module, example: tuple[torch.Tensor, ...], io: IO, path: Path) -> None:
    """`module` traced on `example` into the ONNX file at `path`, its inputs and outputs named as `io` says."""
    torch.onnx.export(
        module,
        example,
        str(path),
        input_names=list(io["inputs"]),
        output_names=list(io["outputs"]),
        dynamic_axes=dynamic_axes(io),
        opset_version=OPSET,
        dynamo=False,  # the legacy exporter fuses each LSTM into one ONNX LSTM node (faster in ORT)
    )
    onnx.checker.check_model(onnx.load(str(path)))


def io_spec(io: IO) -> dict:
    """`io` as the manifest lists a graph's inputs and outputs."""
    return {
        group: [{"name": n, "shape": shape, "dtype": dtype} for n, (shape, dtype) in io[group].items()]
        for group in ("inputs", "outputs")
    }
