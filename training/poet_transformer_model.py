"""The Transformer poet: a small causal Transformer language model over characters, as in nanoGPT's model.py.

Pre-norm blocks (LayerNorm, causal self-attention, LayerNorm, MLP, each added back to the residual stream),
learned absolute positions, input and output embeddings tied, dropout on embeddings, attention and residuals.
It reads the same <bos> poem <eos> sequences, split and vocabulary as the LSTM poet (training/poet_model.py),
so perplexity per character compares directly.

Serving decodes one character per step: `step` takes each row's token and position and the keys and values of
the positions it has already read (a key/value cache), attends the new position to those and to itself, and
returns the new position's key and value, which the caller writes into the cache. Rows of a batch may have read
different numbers of positions: row b's entries are the cache's first `position[b]` slots, the rest free and
masked, so the step only reads the cache (never copies it) and the caller writes each row's new slot in place.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class PoetTransformerConfig:
    vocab_size: int
    context: int = 256  # positions a sequence may have: the served poem's 200 characters + <bos> fit
    layers: int = 6
    heads: int = 8
    d_model: int = 512
    dropout: float = 0.2


class CausalSelfAttention(nn.Module):
    def __init__(self, config: PoetTransformerConfig) -> None:
        super().__init__()
        assert config.d_model % config.heads == 0
        self.heads, self.head_dim = config.heads, config.d_model // config.heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.dropout = config.dropout
        self.resid_drop = nn.Dropout(config.dropout)

    def split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[B, T, 3 * d_model] → q, k, v, each [B, heads, T, head_dim]."""
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v

    def merge_heads(self, y: torch.Tensor) -> torch.Tensor:
        b, _, t, _ = y.shape
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(b, t, self.heads * self.head_dim)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.split_heads(x)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        return self.merge_heads(y)

    def step(
        self, x: torch.Tensor, past_k: torch.Tensor, past_v: torch.Tensor, bias: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One new position per row: x [B, 1, d], past_k/v [B, heads, S, head_dim], bias [B, 1, 1, S] (0 on a
        row's own slots, a large negative number on the free ones) → y, and the new position's key and value
        [B, heads, head_dim]. The scores of the cache and of the new position are computed apart and softmaxed
        together, so the cache is only read, never concatenated (a copy of all of it at every step). Plain matrix
        products (no fused kernel), so that it exports to any ONNX Runtime."""
        q, k, v = self.split_heads(x)
        scale = 1 / math.sqrt(self.head_dim)
        past = q @ past_k.transpose(-1, -2) * scale + bias
        own = (q * k).sum(dim=-1, keepdim=True) * scale
        weights = torch.cat([past, own], dim=-1).softmax(dim=-1)
        y = weights[..., :-1] @ past_v + weights[..., -1:] * v
        return self.merge_heads(y), k[:, :, 0], v[:, :, 0]


class MLP(nn.Module):
    def __init__(self, config: PoetTransformerConfig) -> None:
        super().__init__()
        self.up = nn.Linear(config.d_model, 4 * config.d_model)
        self.down = nn.Linear(4 * config.d_model, config.d_model)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.down(F.gelu(self.up(x))))


class Block(nn.Module):
    def __init__(self, config: PoetTransformerConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.d_model)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))

    def step(
        self, x: torch.Tensor, past_k: torch.Tensor, past_v: torch.Tensor, bias: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y, k, v = self.attn.step(self.ln_1(x), past_k, past_v, bias)
        x = x + y
        return x + self.mlp(self.ln_2(x)), k, v


class PoetTransformer(nn.Module):
    def __init__(self, config: PoetTransformerConfig) -> None:
        super().__init__()
        # A plain dict, as every model's: checkpoints and manifests record it, PoetTransformer(Config(**it)) rebuilds.
        self.config = asdict(config)
        self.wte = nn.Embedding(config.vocab_size, config.d_model)
        self.wpe = nn.Embedding(config.context, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.head.weight = self.wte.weight  # tied: the vocabulary is most of a small model's parameters
        self.apply(self._init_weights)
        # GPT-2's scaling of the residual projections: the residual stream's variance stays put with depth.
        for name, param in self.named_parameters():
            if name.endswith(("attn.proj.weight", "mlp.down.weight")):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, T] (T ≤ context) → logits [B, T, V], each position seeing itself and those before it."""
        positions = torch.arange(ids.size(1), device=ids.device)
        x = self.drop(self.wte(ids) + self.wpe(positions))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))

    def empty_cache(self, batch: int, slots: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of rows that have read nothing: [layers, B, heads, slots, head_dim] each, all free."""
        c = self.config
        shape = (c["layers"], batch, c["heads"], slots, c["d_model"] // c["heads"])
        return torch.zeros(shape), torch.zeros(shape)

    def step(
        self, token: torch.Tensor, position: torch.Tensor, past_keys: torch.Tensor, past_values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One character for each row: token [B] at position [B] (how many the row has read), past keys and values
        [layers, B, heads, S, head_dim] whose first `position[b]` slots are row b's (S ≥ every position) → logits
        [B, V] and the new position's key and value [layers, B, heads, head_dim], for slot `position[b]`."""
        own = torch.arange(past_keys.size(3), device=token.device)[None, :] < position[:, None]
        bias = torch.where(own, 0.0, -1e9)[:, None, None, :]
        x = self.wte(token) + self.wpe(position)
        keys, values = [], []
        x = x[:, None, :]
        for layer, block in enumerate(self.blocks):
            x, k, v = block.step(x, past_keys[layer], past_values[layer], bias)
            keys.append(k)
            values.append(v)
        return self.head(self.ln_f(x[:, 0])), torch.stack(keys), torch.stack(values)
