"""Weights read back from exported graphs (training/onnx_weights.py): exact for what the exporter copies, an error
for what it computes, and the bundled models' own weights in PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from training import onnx_weights
from training.classifier_model import NameClassifier, NameClassifierEnsemble
from training.export import export_classifier, export_speller, load_speller
from training.export.graphs import export_graph
from training.export.onnx_passes import store_int8
from training.onnx_weights import (
    load_classifier_artifact,
    load_from_onnx,
    load_speller_artifact,
    speller_run_from_artifact,
)
from training.speller_model import SpellerNet

MODELS = Path(__file__).resolve().parent.parent / "models"


def _folding_session(graph: Path) -> ort.InferenceSession:
    """As the service loads int8-stored weights: folded back to float32, computed in float32."""
    options = ort.SessionOptions()
    options.add_session_config_entry("session.disable_quant_qdq", "1")
    return ort.InferenceSession(str(graph), options)


def _export_speller(model: nn.Module, out: Path) -> list[Path]:
    return list(export_speller(model, out).values())


def test_a_speller_read_back_from_its_graphs_has_exactly_its_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    trained = SpellerNet(vocab_size=30, emb=8, hidden=16)
    graphs = _export_speller(trained, tmp_path / "graphs")
    torch.manual_seed(1)
    read = load_from_onnx(SpellerNet(vocab_size=30, emb=8, hidden=16), _export_speller, graphs)
    for (name, want), (_, got) in zip(trained.state_dict().items(), read.state_dict().items(), strict=True):
        assert torch.equal(want, got), name


def test_parameters_past_one_tagging_pass_are_read_in_the_next(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A smaller OFFSET leaves fewer tags a pass: this speller then needs several exports.
    monkeypatch.setattr(onnx_weights, "OFFSET", 2**24 - 3000)
    torch.manual_seed(0)
    trained = SpellerNet(vocab_size=30, emb=8, hidden=16)
    assert sum(p.numel() for p in trained.parameters()) > 2 * 3000
    graphs = _export_speller(trained, tmp_path / "graphs")
    read = load_from_onnx(SpellerNet(vocab_size=30, emb=8, hidden=16), _export_speller, graphs)
    assert all(torch.equal(a, b) for a, b in zip(trained.parameters(), read.parameters(), strict=True))


def test_weights_stored_as_int8_are_read_as_onnx_runtime_dequantizes_them(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = {"vocab_size": 20, "classes": 5, "emb": 8, "hidden": 16, "dense": 16, "dropout": 0.0}
    trained = NameClassifierEnsemble([NameClassifier(**config), NameClassifier(**config)])
    graph = export_classifier(trained, tmp_path)
    store_int8(graph, min_elements=64)
    read = load_from_onnx(
        NameClassifierEnsemble([NameClassifier(**config), NameClassifier(**config)]),
        lambda m, out: [export_classifier(m, out)],
        [graph],
    )
    # Rounded to int8 and back: close to the trained weights, not equal to them.
    embed = read.members[0].embed.weight.detach()
    assert not torch.equal(embed, trained.members[0].embed.weight)
    assert torch.allclose(embed, trained.members[0].embed.weight, atol=embed.abs().max().item() / 127)
    ids, lengths = torch.tensor([[5, 6, 7, 0], [8, 9, 10, 11]]), torch.tensor([3, 4])
    with torch.no_grad():
        want = torch.softmax(read(ids, lengths), dim=-1).numpy()
    (got,) = _folding_session(graph).run(None, {"ids": ids.numpy(), "lengths": lengths.numpy()})
    np.testing.assert_allclose(got, want, atol=1e-5)


class Doubled(nn.Module):
    """A weight the exporter folds into a computed constant, not a copy."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ (self.weight * 2)


def _export_doubled(model: nn.Module, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    io = {"inputs": {"x": (["batch", 4], "float32")}, "outputs": {"y": (["batch", 4], "float32")}}
    export_graph(model, (torch.randn(2, 4),), io, out / "doubled.onnx")
    return [out / "doubled.onnx"]


def test_a_weight_the_exporter_computed_is_refused(tmp_path: Path) -> None:
    graphs = _export_doubled(Doubled(), tmp_path / "graphs")
    with pytest.raises(ValueError, match="no weights for weight"):
        load_from_onnx(Doubled(), _export_doubled, graphs)


def test_the_bundled_speller_in_pytorch_computes_what_its_graphs_compute() -> None:
    model, manifest = load_speller_artifact(MODELS / "speller")
    src, src_len = torch.tensor([[8, 9, 10, 11, 0], [5, 12, 7, 6, 9]]), torch.tensor([4, 5])
    bias = torch.where(torch.arange(5) < src_len[:, None], 0.0, -1e9)
    token = torch.tensor([1, 1])
    with torch.no_grad():
        memory, keys, h, c = model.encode(src, src_len)
        logits, _, _ = model.decode(token[:, None], h, c, memory, keys, bias)
    encoder = ort.InferenceSession(str(MODELS / "speller" / manifest["graphs"]["encoder"]["file"]))
    values, *got = encoder.run(None, {"src": src.numpy(), "src_len": src_len.numpy()})
    for want, out in zip((keys, h, c), got, strict=True):
        np.testing.assert_allclose(out, want.numpy(), atol=1e-4)
    decoder = ort.InferenceSession(str(MODELS / "speller" / manifest["graphs"]["decoder_step"]["file"]))
    feeds = {"token": token.numpy(), "h": h.numpy(), "c": c.numpy(), "values": values, "keys": keys.numpy(),
             "bias": bias.numpy(), "slots": np.arange(2), "slot_rows": np.arange(2)}  # fmt: skip
    np.testing.assert_allclose(decoder.run(None, feeds)[0], logits[:, 0].numpy(), atol=1e-4)


def test_the_bundled_classifier_in_pytorch_computes_what_its_graph_computes() -> None:
    model, manifest = load_classifier_artifact(MODELS / "classifier")
    channels = manifest["lexicon"]["channels"]
    ids, lengths = torch.tensor([[5, 6, 7, 0], [8, 9, 10, 11]]), torch.tensor([3, 4])
    lexicon = torch.zeros(2, 4, channels)
    lexicon[1, :, -1], lexicon[1, :, 3] = 1.0, 1.0
    with torch.no_grad():
        want = torch.softmax(model(ids, lengths, lexicon), dim=-1).numpy()
    session = _folding_session(MODELS / "classifier" / manifest["graphs"]["classifier"]["file"])
    (got,) = session.run(None, {"ids": ids.numpy(), "lengths": lengths.numpy(), "lexicon": lexicon.numpy()})
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_the_bundled_speller_exported_again_from_its_rebuilt_run_is_the_same_files(tmp_path: Path) -> None:
    # Also holds the bundled graphs to the export code: a change to the graphs needs a re-export.
    checkpoint = speller_run_from_artifact(MODELS / "speller", tmp_path / "run")
    assert {p.name for p in checkpoint.parent.iterdir()} == {"best.pt", "dictionary.txt", "summary.json"}
    model, state = load_speller(checkpoint)
    assert state["max_len"] == 24 and state["from_artifact"]["folder"] == str(MODELS / "speller")
    for path in export_speller(model, tmp_path / "graphs", int8=True).values():
        assert path.read_bytes() == (MODELS / "speller" / path.name).read_bytes(), path.name
