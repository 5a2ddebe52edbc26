"""The speller's artifact: encoder.onnx and decoder_step.onnx (and int8 copies), dictionary.txt, the manifest."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from training.export.graphs import IO, example_words, export_graph, frozen
from training.export.manifest import file_digests, graph_specs, header, read_summary, write_manifest
from training.export.onnx_passes import quantize_int8, weights_digest, with_int8_copies
from training.speller_model import SpellerNet, attention


class SpellerEncoder(nn.Module):
    """src, src_len → what every decoder step reads of each word, and the decoder's first h and c.

    The decoder's `combine` layer reads [state; context], and the context is an attention-weighted sum of the
    encoder states (memory): so its context half can be applied to each encoder state once, here (the values
    [B, T, H]), instead of to each beam row's context at every step. Same numbers up to rounding."""

    def __init__(self, model: SpellerNet) -> None:
        super().__init__()
        self.model = model
        self.combine_context = frozen(model.combine.weight[:, model.combine.out_features :])

    def forward(self, src: torch.Tensor, src_len: torch.Tensor) -> tuple[torch.Tensor, ...]:
        memory, keys, h, c = self.model.encode(src, src_len)
        return memory @ self.combine_context.T, keys, h, c


class SpellerDecoderStep(nn.Module):
    """One step for a batch of rows: token [B] → logits [B, V], with h and c in and out: SpellerNet.decode with
    L = 1 (eval mode), reading the encoder's values (SpellerEncoder) where decode reads memory. The encoder
    outputs (values, keys, bias) come once per word; the rows are each word's live rows, consecutive, and
    attention reads them in equal groups (forward's `slots`)."""

    def __init__(self, model: SpellerNet) -> None:
        super().__init__()
        self.model = model
        self.combine_state = frozen(model.combine.weight[:, : model.combine.out_features])

    def cell(self, token: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The decoder LSTM's step → its output [B, H] and the new h, c [1, B, H]."""
        y, (h, c) = self.model.decoder(self.model.embed(token)[:, None], (h, c))
        return y[:, 0], h, c

    def forward(
        self,
        token: torch.Tensor,
        h: torch.Tensor,
        c: torch.Tensor,
        values: torch.Tensor,
        keys: torch.Tensor,
        bias: torch.Tensor,
        slots: torch.Tensor,
        slot_rows: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """The rows are a word's live hypotheses only: each row's place in the layout of equal groups that
        attention reads, [words × widest word's rows], is `slots` [B], and each place of that layout reads the
        row `slot_rows` [words × widest]: its own, or for a place no row fills its word's first row. So the LSTM,
        combine and the output layer never compute a padding row."""
        y, h, c = self.cell(token, h, c)
        weights = attention(y[slot_rows], keys, bias)
        context = torch.bmm(weights, values).reshape(-1, y.size(1))[slots]  # through combine's context half
        mixed = torch.tanh(y @ self.combine_state.T + context + self.model.combine.bias)
        return self.model.out(mixed), h, c


class SpellerDecoderStepTable(SpellerDecoderStep):
    """The same step with the LSTM cell written out, its input half a table: a character's embedding through the
    LSTM's input weights, plus both biases, is one of V rows [V, 4H] computed here once, so a step gathers a row
    where the LSTM multiplies. The int8 graph is quantized from this one, because ONNX Runtime's quantized LSTM
    op is slower per row than the int8 product of the recurrent half alone (docs/design.md). The gates are
    reordered to [i, f, o, g], so that one Sigmoid covers three of them."""

    def __init__(self, model: SpellerNet) -> None:
        super().__init__(model)
        lstm, hidden = model.decoder, model.decoder.hidden_size
        order = torch.cat([torch.arange(0, 2 * hidden), torch.arange(3 * hidden, 4 * hidden),
                           torch.arange(2 * hidden, 3 * hidden)])  # PyTorch's [i, f, g, o] → [i, f, o, g]  # fmt: skip
        table = model.embed.weight @ lstm.weight_ih_l0.T + lstm.bias_ih_l0 + lstm.bias_hh_l0
        self.input_table = frozen(table[:, order])
        self.recurrent = frozen(lstm.weight_hh_l0[order])

    def cell(self, token: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hidden = self.recurrent.size(1)
        gates = self.input_table[token] + h[0] @ self.recurrent.T
        sigmoid, g = gates.split([3 * hidden, hidden], dim=1)
        i, f, o = torch.sigmoid(sigmoid).split([hidden, hidden, hidden], dim=1)
        c = f * c[0] + i * torch.tanh(g)
        y = o * torch.tanh(c)
        return y, y[None], c[None]


ENCODER_IO: IO = {
    "inputs": {"src": (["batch", "src_len"], "int64"), "src_len": (["batch"], "int64")},
    "outputs": {
        "values": (["batch", "src_len", "hidden"], "float32"),
        "keys": (["batch", "src_len", "hidden"], "float32"),
        "h0": ([1, "batch", "hidden"], "float32"),
        "c0": ([1, "batch", "hidden"], "float32"),
    },
}
DECODER_IO: IO = {
    "inputs": {
        "token": (["batch"], "int64"),
        "h": ([1, "batch", "hidden"], "float32"),
        "c": ([1, "batch", "hidden"], "float32"),
        "values": (["words", "src_len", "hidden"], "float32"),
        "keys": (["words", "src_len", "hidden"], "float32"),
        "bias": (["words", "src_len"], "float32"),
        "slots": (["batch"], "int64"),
        "slot_rows": (["slots"], "int64"),
    },
    "outputs": {
        "logits": (["batch", "vocab"], "float32"),
        "h_out": ([1, "batch", "hidden"], "float32"),
        "c_out": ([1, "batch", "hidden"], "float32"),
    },
}


def load_speller(checkpoint: Path) -> tuple[SpellerNet, dict]:
    """A training checkpoint's speller, in eval mode, and the checkpoint itself."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = SpellerNet(**state["config"])
    model.load_state_dict(state["state_dict"])
    return model.eval(), state


def export_decoder_step(step: SpellerDecoderStep, path: Path) -> None:
    """A decoder step module's graph at `path`, traced on two words of three rows each (so that the graph fixes
    neither the number of words nor the rows per word), all of them live."""
    with torch.no_grad():
        values, keys, h, c = SpellerEncoder(step.model)(*example_words())
        h, c = h.repeat_interleave(3, dim=1), c.repeat_interleave(3, dim=1)
        token, bias = torch.tensor([1, 1, 1, 1, 1, 1]), torch.zeros(2, 4)
        slots = torch.arange(6)  # every row live: each in its own place
        export_graph(step.eval(), (token, h, c, values, keys, bias, slots, slots), DECODER_IO, path)


def export_speller(model: SpellerNet, out: Path, int8: bool = False) -> dict[str, Path]:
    """Write encoder.onnx and decoder_step.onnx for `model` into `out`, and with `int8` also the int8 graphs
    (encoder.int8.onnx, decoder_step.int8.onnx), which the service runs on a CPU. The int8 step is quantized
    from SpellerDecoderStepTable's graph, the float32 one is the LSTM op's: it runs on a GPU, and it holds each
    trained weight as it is, which training/onnx_weights.py reads back (the table is a product of two)."""
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    encoder_path, decoder_path = out / "encoder.onnx", out / "decoder_step.onnx"
    # The exporter restores each wrapper's training flag afterwards, recursively: a wrapper left in
    # train mode would switch the model's dropout back on for whoever uses it next.
    with torch.no_grad():
        export_graph(SpellerEncoder(model).eval(), example_words(), ENCODER_IO, encoder_path)
    export_decoder_step(SpellerDecoderStep(model), decoder_path)
    paths = with_int8_copies({"encoder": encoder_path, "decoder_step": decoder_path}, int8)
    if int8:  # the decoder's int8 graph is quantized from the table step's instead
        with tempfile.TemporaryDirectory() as tmp:
            table_path = Path(tmp) / "decoder_step_table.onnx"
            export_decoder_step(SpellerDecoderStepTable(model), table_path)
            # MatMul only: the table stays float32, so a gathered row is a copy
            quantize_int8(table_path, paths["decoder_step_int8"], op_types=["MatMul"])
    return paths


def write_speller_artifact(checkpoint: Path, out: Path, version: str, int8: bool = False) -> dict:
    """models/speller from a training run's checkpoint: the graphs, the run's dictionary.txt and the manifest."""
    model, state = load_speller(checkpoint)
    run_dir = checkpoint.parent
    served = "encoder.int8.onnx" if int8 else "encoder.onnx"  # what the measured quality was measured on
    previous_weights = weights_digest(out / served)
    paths = export_speller(model, out, int8)
    shutil.copyfile(run_dir / "dictionary.txt", out / "dictionary.txt")
    summary = read_summary(run_dir)
    architecture = "character encoder-decoder: forward + reversed LSTM encoder, Luong attention, LSTM decoder"
    manifest = {
        **header("speller", version, architecture, state["config"], paths, ["encoder", "decoder_step"]),
        "training": {
            "best_epoch": state["epoch"],
            "valid": state["valid"],
            "args": state["args"],
            "pairs": {k: summary.get(k) for k in ("train_pairs", "valid_pairs", "heldout_pairs")},
        },
        "data": summary.get("sources", {}),
        "vocab": state["vocab"],
        "special_tokens": {"pad": 0, "sos": 1, "eos": 2, "unk": 3},
        "limits": {"max_word_len": state["max_len"], "max_decode_steps": state["max_len"] + 1},
        "graphs": graph_specs(paths, lambda name: ENCODER_IO if "encoder" in name else DECODER_IO),
        "dictionary": "dictionary.txt",
        "quality": {},
        "files": file_digests([*paths.values(), out / "dictionary.txt"]),
    }
    return write_manifest(out, manifest, served, previous_weights)
