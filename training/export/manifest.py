"""The manifest: what an artifact folder holds and how to run it, the only contract between training and app/."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from pathlib import Path

from training.export.graphs import IO, io_spec
from training.export.onnx_passes import weights_digest
from training.speller_data import sha256_file

# What the measuring commands (training/tune_speller.py, training/measure.py) add to a manifest after export.
MEASURED = ("quality", "decoding", "quantization")


def header(
    name: str, version: str, architecture: str, config: dict | list, graphs: dict[str, Path], roles: list[str],
    weights: str | None = None,
) -> dict:  # fmt: skip
    """The fields every manifest opens with. `roles` are the graphs one precision runs, in the order the service
    reads them; `weights` says how the graph files store their weights, where that is not float32 as computed."""
    return {
        "name": name,
        "version": version,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "architecture": architecture,
        "config": config,
        **({"weights": weights} if weights else {}),
        # On a CPU the service runs the int8 graphs when there are any, on a GPU the float32 ones.
        "precision": precision_lists(roles, graphs),
    }


def precision_lists(roles: list[str], graphs: dict[str, Path]) -> dict[str, list[str]]:
    """The manifest's "precision": each precision's graphs, one per role in `roles` and in its order (what the
    service reads, app.runtime.artifacts.choose_precision); int8 only when every role has its `<role>_int8` graph."""
    lists = {"float32": roles}
    if all(f"{role}_int8" in graphs for role in roles):
        lists["int8"] = [f"{role}_int8" for role in roles]
    return lists


def graph_specs(graphs: dict[str, Path], io_of: Callable[[str], IO]) -> dict:
    """The manifest's "graphs": each graph's file and its inputs and outputs (`io_of` its name)."""
    return {name: {"file": path.name, **io_spec(io_of(name))} for name, path in graphs.items()}


def file_digests(paths: Iterable[Path]) -> dict[str, str]:
    """The manifest's "files": the sha256 of each, by name, which the service checks before loading."""
    return {path.name: sha256_file(path) for path in paths}


def read_summary(run_dir: Path) -> dict:
    """The training run's summary.json, or nothing for a run that wrote none."""
    path = run_dir / "summary.json"
    return json.loads(path.read_text()) if path.exists() else {}


def write_manifest(out: Path, manifest: dict, weights: str, previous_weights: str | None) -> dict:
    """Write out/manifest.json. Measured quality and tuned decoding belong to the measuring commands: they are
    carried over from the manifest already there only when `weights`, the graph that holds the trained weights,
    holds the same weights as before the export (`previous_weights`, its weights_digest then)."""
    previous = out / "manifest.json"
    if previous.exists() and previous_weights is not None and previous_weights == weights_digest(out / weights):
        old = json.loads(previous.read_text())
        manifest.update({key: old[key] for key in MEASURED if key in old})
    previous.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


def record_in_manifest(manifest_path: Path, key: str, block: dict) -> None:
    """Put a measured `block` under `key` (one of MEASURED) in a model's manifest, read afresh so the rest stays
    as it is."""
    manifest = json.loads(manifest_path.read_text())
    manifest[key] = block
    manifest_path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
