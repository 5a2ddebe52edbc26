"""ONNX Runtime sessions: which execution providers and which precision to serve, and one session per graph
whose inputs and outputs must be the manifest's."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import onnxruntime as ort

from app.runtime.artifacts import ArtifactError, GraphSpec, Manifest
from app.settings import Settings

log = logging.getLogger(__name__)


def select_providers(setting: str) -> list[str]:
    available = ort.get_available_providers()
    if setting == "cpu":
        return ["CPUExecutionProvider"]
    if setting == "cuda" and "CUDAExecutionProvider" not in available:
        raise ArtifactError(f"CHARSERVE_PROVIDERS=cuda but ONNX Runtime offers only {available}")
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def choose_precision(
    folder: Path, manifest: Manifest, roles: list[str], setting: str, providers: str
) -> tuple[str, list[GraphSpec]]:
    """The precision to serve and its graphs, one per role in `roles` (the float32 graphs' names), as the
    manifest's "precision" lists them: int8 on a CPU when the artifact offers it, float32 on a GPU, where ONNX
    Runtime's quantized LSTM would fall back to the CPU; a setting other than auto decides otherwise."""
    path = folder / "manifest.json"
    offered = {name: graphs for name, graphs in (manifest.precision or {"float32": roles}).items() if graphs}
    if setting == "int8" and "int8" not in offered:
        variable = f"CHARSERVE_{manifest.name.upper()}_PRECISION"
        raise ArtifactError(f"{path}: no int8 graphs, but {variable}=int8")
    if setting != "auto":
        precision = setting
    else:
        on_gpu = select_providers(providers)[0] == "CUDAExecutionProvider"
        precision = "int8" if "int8" in offered and not on_gpu else "float32"
    names = offered.get(precision, [])
    if precision == "float32" and names != roles:
        raise ArtifactError(f"{path}: float32 graphs {names}, this server reads {roles}")
    if len(names) != len(roles) or any(name not in manifest.graphs for name in names):
        raise ArtifactError(f"{path}: {precision} graphs {names} are not one per role {roles} among its graphs")
    return precision, [manifest.graphs[name] for name in names]


def open_session(
    folder: Path, graph: GraphSpec, settings: Settings, fold_dequantize: bool = False
) -> ort.InferenceSession:
    """One session for one graph; its input and output names must be the manifest's. `fold_dequantize`: the
    graph stores weights as int8 behind DequantizeLinear nodes (training/export.py's store_int8), which ONNX
    Runtime then folds into float32 weights at load instead of keeping them for its QDQ fusions."""
    path = folder / graph.file
    options = ort.SessionOptions()
    if fold_dequantize:
        options.add_session_config_entry("session.disable_quant_qdq", "1")
    # 0 means "the cores this process may use", counted here: left at 0, ONNX Runtime counts the machine's
    # cores and pins its own threads to them, escaping taskset and cpuset limits (seen in bench/serving.py).
    options.intra_op_num_threads = settings.intra_op_threads or len(os.sched_getaffinity(0))
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = ort.InferenceSession(str(path), options, providers=select_providers(settings.providers))
    except ArtifactError:
        raise
    except Exception as exc:  # ORT raises its own exception types for a bad graph
        raise ArtifactError(f"{path}: ONNX Runtime cannot load it: {exc}") from exc
    for kind, declared, actual in (
        ("inputs", graph.inputs, session.get_inputs()),
        ("outputs", graph.outputs, session.get_outputs()),
    ):
        names, expected = [t.name for t in actual], [t.name for t in declared]
        if names != expected:
            raise ArtifactError(f"{path}: graph {kind} {names} differ from the manifest's {expected}")
    log.info("loaded %s on %s", path, session.get_providers()[0])
    return session
