"""ONNX graphs against PyTorch, for batch sizes 1, 3, 17 and every source length up to the limit."""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from app.adapters.speller.rows import DecoderRows
from training.export.speller import SpellerDecoderStepTable, export_decoder_step, export_speller
from training.speller_model import SpellerNet, mask_bias

MAX_LEN = 24


@torch.no_grad()
def context_values(model: SpellerNet, memory: torch.Tensor) -> torch.Tensor:
    """What the encoder graph outputs for the decoder to attend over: memory through combine's context half."""
    hidden = model.combine.out_features
    return memory @ model.combine.weight[:, hidden:].T


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[SpellerNet, ort.InferenceSession, ort.InferenceSession]:
    torch.manual_seed(0)
    model = SpellerNet(vocab_size=30, emb=16, hidden=32).eval()
    paths = export_speller(model, tmp_path_factory.mktemp("onnx"))
    open_ = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])  # noqa: E731
    return model, open_(paths["encoder"]), open_(paths["decoder_step"])


@pytest.fixture(scope="module")
def table_step(exported, tmp_path_factory: pytest.TempPathFactory) -> ort.InferenceSession:
    """The step the int8 graph is quantized from, in float32: the LSTM cell written out, its input half a table."""
    model, _, _ = exported
    path = tmp_path_factory.mktemp("table") / "decoder_step_table.onnx"
    export_decoder_step(SpellerDecoderStepTable(model), path)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize(("batch", "group"), [(1, 1), (3, 1), (17, 1), (3, 4), (5, 16)])
def test_encoder_and_decoder_step_match_pytorch(exported, table_step, batch: int, group: int) -> None:
    """`batch` words, `group` decoder rows each (a beam); the decoder gets each word's encoder outputs once. Both
    step graphs: the LSTM op's (float32, GPU) and the table step's (what the int8 graph is quantized from)."""
    model, encoder, decoder = exported
    rng = torch.Generator().manual_seed(batch * group)
    for length in range(1, MAX_LEN + 1):
        lengths = torch.randint(1, length + 1, (batch,), generator=rng)
        lengths[0] = length  # the longest row sets the padded width
        src = torch.randint(4, 30, (batch, length), generator=rng) * (torch.arange(length)[None] < lengths[:, None])
        token = torch.randint(4, 30, (batch * group,), generator=rng)
        with torch.no_grad():
            encoded = model.encode(src, lengths)
            memory, keys, h0, c0 = encoded
            bias = mask_bias(lengths, length)
            # Each row of a word's group in a state of its own, as a beam's hypotheses are.
            h, c = (s.repeat_interleave(group, dim=1) + 0.1 * torch.randn(s.shape, generator=rng).repeat(1, group, 1)
                    for s in (h0, c0))  # fmt: skip
            logits, h1, c1 = model.decode(token[:, None], h, c, memory, keys, bias)
            # The same as decoding every row with a copy of its word's outputs.
            copies = [x.repeat_interleave(group, dim=0) for x in (memory, keys, bias)]
            per_row, _, _ = model.decode(token[:, None], h, c, *copies)
        torch.testing.assert_close(logits, per_row)
        onnx_enc = encoder.run(None, {"src": src.numpy(), "src_len": lengths.numpy()})
        for got, want in zip(onnx_enc, (context_values(model, memory), keys, h0, c0), strict=True):
            np.testing.assert_allclose(got, want.numpy(), atol=1e-5, rtol=1e-4)
        # The graph's step reads the values the encoder graph wrote and computes decode's numbers.
        every = np.arange(batch * group)  # every row live, each in its own place
        feeds = {"token": token.numpy(), "h": h.numpy(), "c": c.numpy(), "values": onnx_enc[0],
                 "keys": keys.numpy(), "bias": bias.numpy(), "slots": every, "slot_rows": every}  # fmt: skip
        for step in (decoder, table_step):
            for got, want in zip(step.run(None, feeds), (logits[:, 0], h1, c1), strict=True):
                np.testing.assert_allclose(got, want.numpy(), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("live", [[4, 1, 2], [1, 1, 1], [4, 4, 4], [3, 4, 1]])
def test_a_step_over_live_rows_only_computes_what_the_whole_group_does(exported, table_step, live: list[int]) -> None:
    """Each word's first `live` rows of its group of 4 (its live hypotheses), as the speller adapter feeds them:
    both step graphs give those rows exactly what they give them when every row of every group is computed."""
    _, encoder, decoder = exported
    group, rng = 4, np.random.default_rng(sum(live))
    src, lengths = np.array([[5, 6, 7, 0], [8, 9, 10, 11], [12, 13, 0, 0]]), np.array([3, 4, 2])
    values, keys, h0, c0 = encoder.run(None, {"src": src, "src_len": lengths})
    rows = DecoderRows(
        group=group,
        word=np.repeat(np.arange(3), group),
        token=rng.integers(4, 30, 3 * group),
        h=np.repeat(h0, group, axis=1) + 0.1 * rng.standard_normal((1, 3 * group, h0.shape[2])).astype(np.float32),
        c=np.repeat(c0, group, axis=1),
        nodes=np.zeros(3 * group, dtype=np.int32),
        history=np.zeros((3 * group, 2), dtype=np.int64),
        edits=np.zeros((3 * group, 0), dtype=np.int32),
        edits_prev=np.zeros((3 * group, 0), dtype=np.int32),
        values=values,
        keys=keys,
        bias=mask_bias(torch.from_numpy(lengths), 4).numpy(),
    )
    for step in (decoder, table_step):
        whole = step.run(None, rows.inputs()[0])
        feeds, decoded = rows.inputs(np.array(live))
        assert len(feeds["token"]) == len(decoded) == sum(live)
        for got, want in zip(step.run(None, feeds), whole, strict=True):
            np.testing.assert_allclose(got, want[..., decoded, :] if got.ndim == 3 else want[decoded], atol=1e-6)


def test_padding_does_not_change_a_word(exported) -> None:
    """A word encodes the same alone or padded beside a longer one: the reversed pass never reads padding."""
    _, encoder, _ = exported
    word = np.array([[5, 6, 7]])
    alone = encoder.run(None, {"src": word, "src_len": np.array([3])})
    padded_src = np.array([[5, 6, 7, 0, 0], [8, 9, 10, 11, 12]])
    padded = encoder.run(None, {"src": padded_src, "src_len": np.array([3, 5])})
    np.testing.assert_allclose(padded[0][0, :3], alone[0][0], atol=1e-5)
    np.testing.assert_allclose(padded[2][:, 0], alone[2][:, 0], atol=1e-5)


def test_exported_files_exist(exported, tmp_path: Path) -> None:
    model, _, _ = exported
    paths = export_speller(model, tmp_path)
    assert all(p.stat().st_size > 0 for p in paths.values())


def test_int8_graphs_stay_close_to_pytorch(tmp_path: Path) -> None:
    """With int8 weights the graphs are quantized (integer ops in them) and their outputs stay within a few
    percent of PyTorch's; what that costs in answers is measured on validation (docs/design.md)."""
    import onnx

    torch.manual_seed(0)
    model = SpellerNet(vocab_size=30, emb=16, hidden=32).eval()
    paths = export_speller(model, tmp_path, int8=True)
    int8 = [paths["encoder_int8"], paths["decoder_step_int8"]]
    ops = [{n.op_type for n in onnx.load(str(p)).graph.node} for p in int8]
    assert "DynamicQuantizeLSTM" in ops[0] and "MatMulInteger" in ops[1]
    assert "LSTM" not in ops[1] and "DequantizeLinear" not in ops[1]  # the table step's: its table stays float32
    encoder, decoder = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in int8)
    src, lengths = torch.tensor([[5, 6, 7, 0], [8, 9, 10, 11]]), torch.tensor([3, 4])
    token = torch.tensor([5, 6, 7, 8])  # two rows per word
    with torch.no_grad():
        memory, keys, h, c = model.encode(src, lengths)
        h, c = h.repeat_interleave(2, dim=1), c.repeat_interleave(2, dim=1)
        logits, _, _ = model.decode(token[:, None], h, c, memory, keys, mask_bias(lengths, 4))
    values = context_values(model, memory)
    got_values = encoder.run(None, {"src": src.numpy(), "src_len": lengths.numpy()})[0]
    feeds = {"token": token.numpy(), "h": h.numpy(), "c": c.numpy(), "values": values.numpy(),
             "keys": keys.numpy(), "bias": mask_bias(lengths, 4).numpy(), "slots": np.arange(4),
             "slot_rows": np.arange(4)}  # fmt: skip
    got_logits = decoder.run(None, feeds)[0]
    for got, want in ((got_values, values.numpy()), (got_logits, logits[:, 0].numpy())):
        assert np.abs(got - want).max() <= 0.05 * np.abs(want).max()
