"""Model artifacts: read a manifest and check every file against it.

Any problem raises ArtifactError naming the file, so a broken artifact stops start-up with a
message a person can act on.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

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
