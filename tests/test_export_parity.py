"""ONNX graphs against PyTorch, for batch sizes 1, 3, 17 and every source length up to the limit."""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from training.export import export_speller
from training.speller_model import Speller, mask_bias

MAX_LEN = 24


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Speller, ort.InferenceSession, ort.InferenceSession]:
    torch.manual_seed(0)
    model = Speller(vocab_size=30, emb=16, hidden=32).eval()
    paths = export_speller(model, tmp_path_factory.mktemp("onnx"))
    open_ = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])  # noqa: E731
    return model, open_(paths["encoder"]), open_(paths["decoder_step"])


@pytest.mark.parametrize("batch", [1, 3, 17])
def test_encoder_and_decoder_step_match_pytorch(exported, batch: int) -> None:
    model, encoder, decoder = exported
    rng = torch.Generator().manual_seed(batch)
    for length in range(1, MAX_LEN + 1):
        lengths = torch.randint(1, length + 1, (batch,), generator=rng)
        lengths[0] = length  # the longest row sets the padded width
        src = torch.randint(4, 30, (batch, length), generator=rng) * (torch.arange(length)[None] < lengths[:, None])
        token = torch.randint(4, 30, (batch,), generator=rng)
        with torch.no_grad():
            memory, keys, h, c = model.encode(src, lengths)
            bias = mask_bias(lengths, length)
            logits, h1, c1 = model.decode(token[:, None], h, c, memory, keys, bias)
        onnx_enc = encoder.run(None, {"src": src.numpy(), "src_len": lengths.numpy()})
        for got, want in zip(onnx_enc, (memory, keys, h, c), strict=True):
            np.testing.assert_allclose(got, want.numpy(), atol=1e-5, rtol=1e-4)
        feeds = {"token": token.numpy(), "h": h.numpy(), "c": c.numpy(), "memory": memory.numpy(),
                 "keys": keys.numpy(), "bias": bias.numpy()}  # fmt: skip
        onnx_dec = decoder.run(None, feeds)
        for got, want in zip(onnx_dec, (logits[:, 0], h1, c1), strict=True):
            np.testing.assert_allclose(got, want.numpy(), atol=1e-5, rtol=1e-4)


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
