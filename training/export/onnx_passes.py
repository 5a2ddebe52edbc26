"""Rewrites of exported ONNX graphs: int8 copies for a CPU, and smaller storage of a graph's weights.

Every pass leaves the arithmetic the service runs to ONNX Runtime: stored int8 or float16 weights are folded back
to float32 when a session loads the graph, and the dynamically quantized copies compute in int8 only where ONNX
Runtime has int8 kernels.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper


def quantize_int8(source: Path, target: Path, op_types: list[str] | None = None) -> None:
    """The graph at `source` with int8 weights, at `target`: ONNX Runtime's dynamic quantization (MatMul and
    LSTM weights int8, activations quantized at run time; `op_types` narrows which ops). It pays on a CPU with
    integer dot-product instructions; its LSTM op runs on the CPU only, so a GPU keeps the float32 graph. What
    it costs in accuracy is measured, not assumed (docs/design.md, "Experiments and what they decided")."""
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
    (its CPU LSTM has no float16 kernel) at the same speed. Only the rounding of the weights changes.
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
    loads the graph with QDQ fusion off (app/runtime/artifacts.py does that for this graph), so it computes in float32
    on any provider, a GPU's included; only the rounding of the weights changes (bench/poet_quality.py measures
    what that costs).
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


def store_weights(path: Path, storage: str) -> None:
    """Rewrite the graph at `path` to store its weights as `storage` (a key of WEIGHT_STORAGE)."""
    if store := WEIGHT_STORAGE[storage]:
        store(path)


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
