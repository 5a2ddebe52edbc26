"""A broken artifact stops start-up with a message naming the file."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.adapters.speller.model import Speller
from app.main import create_app
from app.runtime.artifacts import ArtifactError
from app.settings import Settings
from tests.conftest import rewrite_checksums


def load(models: Path) -> Speller:
    return Speller(models / "speller", Settings())


def test_a_good_artifact_loads(artifact_copy: Path) -> None:
    assert load(artifact_copy).name == "speller"


def test_missing_manifest(artifact_copy: Path) -> None:
    (artifact_copy / "speller" / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match=r"speller/manifest\.json: manifest missing"):
        load(artifact_copy)


def test_manifest_that_is_not_json(artifact_copy: Path) -> None:
    (artifact_copy / "speller" / "manifest.json").write_text("{oops")
    with pytest.raises(ArtifactError, match=r"manifest\.json: not a valid manifest"):
        load(artifact_copy)


def test_missing_graph(artifact_copy: Path) -> None:
    (artifact_copy / "speller" / "decoder_step.onnx").unlink()
    with pytest.raises(ArtifactError, match=r"speller/decoder_step\.onnx: missing"):
        load(artifact_copy)


def test_corrupt_graph(artifact_copy: Path) -> None:
    path = artifact_copy / "speller" / "encoder.onnx"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ArtifactError, match=r"speller/encoder\.onnx: sha256 does not match"):
        load(artifact_copy)


def test_corrupt_graph_with_matching_checksum_is_caught_by_onnx_runtime(artifact_copy: Path) -> None:
    folder = artifact_copy / "speller"
    (folder / "encoder.onnx").write_bytes(b"not an onnx graph")
    rewrite_checksums(folder)
    with pytest.raises(ArtifactError, match=r"speller/encoder\.onnx: ONNX Runtime cannot load it"):
        load(artifact_copy)


def test_graph_that_does_not_match_the_manifest(artifact_copy: Path) -> None:
    folder = artifact_copy / "speller"
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["graphs"]["encoder"]["inputs"][0]["name"] = "characters"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"speller/encoder\.onnx: graph inputs \['src', 'src_len'\] differ"):
        load(artifact_copy)


def edit_manifest(folder: Path, edit: Callable[[dict], object]) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    edit(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_the_graphs_served_are_the_ones_the_manifest_lists_for_the_precision(artifact_copy: Path) -> None:
    """The manifest's "precision" says which graphs serve which precision; an artifact from before it has float32
    only, and a list that does not give one graph per role stops start-up naming the manifest."""
    folder = artifact_copy / "speller"
    edit_manifest(folder, lambda m: m.pop("precision", None))
    assert load(artifact_copy).precision == "float32"
    edit_manifest(folder, lambda m: m.update(precision={"float32": ["encoder", "decoder_step"], "int8": ["encoder"]}))
    with pytest.raises(ArtifactError, match=r"speller/manifest\.json: int8 graphs \['encoder'\] are not one per role"):
        Speller(folder, Settings(providers="cpu"))
    edit_manifest(folder, lambda m: m.update(precision={"float32": ["decoder_step", "encoder"]}))
    with pytest.raises(ArtifactError, match=r"speller/manifest\.json: float32 graphs \['decoder_step', 'encoder'\]"):
        load(artifact_copy)
    edit_manifest(folder, lambda m: m.update(precision={"float32": ["encoder", "decoder_step"], "int8": []}))
    assert Speller(folder, Settings(providers="cpu")).precision == "float32"  # an empty list offers nothing


def test_a_speller_graph_that_takes_encoder_outputs_per_row_is_refused(artifact_copy: Path) -> None:
    """Graphs exported before speller 1.2.0 took a copy of the encoder outputs per row; this server passes them
    once per word, which such a graph would fail on at the first request: refuse it at start-up instead."""
    import onnx

    folder = artifact_copy / "speller"
    graph = onnx.load(str(folder / "decoder_step.onnx"))
    for tensor in graph.graph.input:
        if tensor.name in ("values", "keys", "bias"):
            tensor.type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.save(graph, str(folder / "decoder_step.onnx"))
    rewrite_checksums(folder)
    with pytest.raises(ArtifactError, match=r"speller/decoder_step\.onnx: takes encoder outputs per row"):
        load(artifact_copy)


def rename_step_input(folder: Path, old: str, new: str) -> None:
    """The speller's float32 step graph with its input `old` named `new`, in the graph and the manifest, the
    checksums rewritten: a graph of an older export, which took another input there."""
    import onnx

    graph = onnx.load(str(folder / "decoder_step.onnx"))
    for tensor in graph.graph.input:
        if tensor.name == old:
            tensor.name = new
    for node in graph.graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
    onnx.save(graph, str(folder / "decoder_step.onnx"))

    def as_before(manifest: dict) -> None:
        for spec in manifest["graphs"]["decoder_step"]["inputs"]:
            spec["name"] = new if spec["name"] == old else spec["name"]

    edit_manifest(folder, as_before)
    rewrite_checksums(folder)


def test_a_speller_graph_that_reads_the_encoder_memory_is_refused(artifact_copy: Path) -> None:
    """Speller 1.2.0 and 1.3.0 attended over the encoder's memory; this server passes the values the encoder
    graph now writes instead (training/export/), which such a graph would fail on at the first request."""
    rename_step_input(artifact_copy / "speller", "values", "memory")
    with pytest.raises(ArtifactError, match=r"speller/decoder_step\.onnx: reads the encoder's memory"):
        load(artifact_copy)


def test_a_speller_graph_that_computes_padding_rows_is_refused(artifact_copy: Path) -> None:
    """Speller 1.5.0 and earlier computed every row of a word's group, padding too; this server passes each word's
    live rows only, with their places (`slots`), which such a graph would fail on at the first request."""
    rename_step_input(artifact_copy / "speller", "slots", "places")
    with pytest.raises(ArtifactError, match=r"speller/decoder_step\.onnx: computes padding rows"):
        load(artifact_copy)


def test_start_up_fails_naming_the_file(artifact_copy: Path) -> None:
    (artifact_copy / "speller" / "dictionary.txt").write_text("tampered\n")
    with (
        pytest.raises(ArtifactError, match=r"speller/dictionary\.txt: sha256 does not match"),
        TestClient(create_app(Settings(models_dir=artifact_copy))),
    ):
        pass


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: f.write_bytes(f.read_bytes()[:-50]), r"classifier/classifier\.onnx: sha256 does not match"),
        (lambda f: f.unlink(), r"classifier/classifier\.onnx: missing"),
    ],
)
def test_a_broken_classifier_stops_the_app_naming_the_file(artifact_copy: Path, damage, message: str) -> None:
    damage(artifact_copy / "classifier" / "classifier.onnx")
    with pytest.raises(ArtifactError, match=message), TestClient(create_app(Settings(models_dir=artifact_copy))):
        pass
