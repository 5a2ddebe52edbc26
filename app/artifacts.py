"""Model artifacts: read a manifest, check every file against it, open one ORT session per graph.

Any problem raises ArtifactError naming the file, so a broken artifact stops start-up with a
message a person can act on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import onnxruntime as ort
from pydantic import BaseModel, ValidationError

from app.settings import Settings

log = logging.getLogger(__name__)


class ArtifactError(RuntimeError):
    pass


class TensorSpec(BaseModel):
    name: str
    shape: list[int | str]
    dtype: str


class GraphSpec(BaseModel):
    file: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


class Manifest(BaseModel):
    """The fields every model's manifest has; model-specific ones stay in `extra`."""

    model_config = {"extra": "allow"}

    name: str
    version: str
    created: str
    vocab: list[str]
    special_tokens: dict[str, int]
    limits: dict[str, int]
    graphs: dict[str, GraphSpec]
    files: dict[str, str]
    quality: dict[str, Any] = {}
    # The graphs of each precision the artifact offers, in the same order for every precision (one per role the
    # model gives them: the speller's encoder, then its decoder step). Artifacts from before it: float32 only.
    precision: dict[str, list[str]] = {}


class ManifestModel:
    """What every served model tells about itself, from its manifest."""

    manifest: Manifest

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_manifest(folder: Path) -> Manifest:
    path = folder / "manifest.json"
    if not path.is_file():
        raise ArtifactError(f"{path}: manifest missing")
    try:
        manifest = Manifest.model_validate(json.loads(path.read_text()))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise ArtifactError(f"{path}: not a valid manifest: {exc}") from exc
    for name, expected in manifest.files.items():
        file = folder / name
        if not file.is_file():
            raise ArtifactError(f"{file}: missing (listed in {path})")
        if sha256_file(file) != expected:
            raise ArtifactError(f"{file}: sha256 does not match {path}; the file is corrupt or from another export")
    for graph in manifest.graphs.values():
        if graph.file not in manifest.files:
            raise ArtifactError(f"{folder / graph.file}: graph file has no checksum in {path}")
    return manifest


def checksummed(folder: Path, manifest: Manifest, file: str, what: str) -> Path:
    """The path of a file a model reads beside its graphs, which its manifest must checksum like the graphs
    (load_manifest has checked every listed one)."""
    path = folder / file
    if file not in manifest.files:
        raise ArtifactError(f"{path}: {what} has no checksum in {folder / 'manifest.json'}")
    return path


def read_word_counts(folder: Path, manifest: Manifest, file: str, what: str) -> dict[str, int]:
    """An artifact's `word<TAB>count` file (the speller's dictionary)."""
    path = checksummed(folder, manifest, file, what)
    counts = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        word, count = line.split("\t")
        counts[word] = int(count)
    return counts


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
