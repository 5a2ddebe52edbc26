"""The Transformer poet's artifact: poet_step.onnx, one character for a batch of poems with a key/value cache.

The step graph: (token [B], position [B], past_keys, past_values [layers, B, heads, S, head_dim]) →
(logits [B, V], key, value [layers, B, heads, head_dim]). Row b's entries are the first `position[b]` (the
characters it has read) of the S cache slots, the rest free; the graph masks the free slots, so rows that joined
the batch at different times share one call, and returns only the new position's key and value, which the
service writes into slot `position[b]` in place (app/adapters/poet_lm.py).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from training.export.graphs import IO
from training.export.manifest import write_manifest
from training.export.onnx_passes import weights_digest
from training.export.poet import export_step, poet_manifest
from training.poet_transformer_model import PoetTransformer, PoetTransformerConfig

SERVED_MAX_CHARS = 200  # the LSTM poet's limit: the two serve the same requests


class PoetTransformerStep(nn.Module):
    """(token, position, past keys, past values) → (logits, the new position's key and value)."""

    def __init__(self, model: PoetTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, token: torch.Tensor, position: torch.Tensor, past_keys: torch.Tensor, past_values: torch.Tensor):
        return self.model.step(token, position, past_keys, past_values)


def poet_transformer_io(config: dict) -> IO:
    head_dim = config["d_model"] // config["heads"]
    past = [config["layers"], "batch", config["heads"], "slots", head_dim]
    new = [config["layers"], "batch", config["heads"], head_dim]
    return {
        "inputs": {
            "token": (["batch"], "int64"),
            "position": (["batch"], "int64"),
            "past_keys": (past, "float32"),
            "past_values": (past, "float32"),
        },
        "outputs": {
            "logits": (["batch", config["vocab_size"]], "float32"),
            "key": (new, "float32"),
            "value": (new, "float32"),
        },
    }


def load_poet_transformer(checkpoint: Path) -> tuple[PoetTransformer, dict]:
    """A training checkpoint's Transformer poet, in eval mode, and the checkpoint itself."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = PoetTransformer(PoetTransformerConfig(**state["config"]))
    model.load_state_dict(state["state_dict"])
    return model.eval(), state


def export_poet_transformer(
    model: PoetTransformer, out: Path, storage: str = "int8", int8: bool = False
) -> dict[str, Path]:
    """Write poet_step.onnx (weights stored as `storage`, computed in float32) and with `int8` its int8 copy.
    Traced on two rows with four cache slots, one row three positions in and one a single position in."""
    keys, values = (torch.randn(x.shape) for x in model.empty_cache(2, slots=4))
    example = (torch.tensor([5, 6]), torch.tensor([3, 1]), keys, values)
    return export_step(PoetTransformerStep(model.eval()).eval(), example, poet_transformer_io(model.config), out,
                       storage, int8)  # fmt: skip


def write_poet_transformer_artifact(
    checkpoint: Path, out: Path, version: str, storage: str = "int8", int8: bool = False
) -> dict:
    """models/poet_transformer from a training run's checkpoint: the step graph(s) and the manifest."""
    model, state = load_poet_transformer(checkpoint)
    served = "poet_step.int8.onnx" if int8 else "poet_step.onnx"
    previous_weights = weights_digest(out / served)
    paths = export_poet_transformer(model, out, storage, int8)
    config = model.config
    architecture = (
        f"character language model: causal Transformer, {config['layers']} pre-norm blocks of {config['heads']} "
        f"heads, d_model {config['d_model']}, learned positions, tied embeddings; served one character per step "
        "with a key/value cache"
    )
    manifest = poet_manifest(
        "poet_transformer", version, architecture, checkpoint, state, paths, storage, poet_transformer_io(config),
        max_chars=min(SERVED_MAX_CHARS, config["context"] - 1), decoder_state="kv_cache",
        eval_stride=int(state["args"].get("eval_stride", config["context"] // 2)),
    )  # fmt: skip
    return write_manifest(out, manifest, served, previous_weights)
