"""The speller: a character encoder-decoder with attention.

The encoder reads the misspelling in both directions; the decoder is a one-layer LSTM whose
state (h, c) is all it carries between steps, so serving can run it one step at a time in batches
with h and c as explicit graph inputs and outputs.
"""

from __future__ import annotations

import torch
from torch import nn

from training.sequence import gather_time, reverse_within_length

NEG_INF = -1e9


def mask_bias(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """0 where a source position is real, a large negative number where it is padding."""
    positions = torch.arange(max_len, device=lengths.device)[None, :]
    return torch.where(positions < lengths[:, None], 0.0, NEG_INF)


def attention(states: torch.Tensor, keys: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Luong (dot) attention weights [W, rows per word × L, T] of decoder states [B, L, H] or [B, H] over their
    words' keys [W, T, H], masked by bias [W, T]: the B rows come in W equal groups, one per word."""
    queries = states.reshape(keys.size(0), -1, states.size(-1))
    return torch.softmax(torch.bmm(queries, keys.transpose(1, 2)) + bias[:, None, :], dim=-1)


class SpellerNet(nn.Module):
    def __init__(self, vocab_size: int, emb: int = 64, hidden: int = 256, dropout: float = 0.2) -> None:
        super().__init__()
        self.config = {"vocab_size": vocab_size, "emb": emb, "hidden": hidden, "dropout": dropout}
        self.embed = nn.Embedding(vocab_size, emb, padding_idx=0)
        # Two forward LSTMs instead of one bidirectional one: the backward pass reads each word
        # reversed within its own length, so padding never leaks into it and export needs no packing.
        self.enc_fwd = nn.LSTM(emb, hidden, batch_first=True)
        self.enc_bwd = nn.LSTM(emb, hidden, batch_first=True)
        self.bridge = nn.Linear(2 * hidden, 2 * hidden)
        self.attn_key = nn.Linear(2 * hidden, hidden, bias=False)
        self.decoder = nn.LSTM(emb, hidden, batch_first=True)
        self.combine = nn.Linear(3 * hidden, hidden)
        self.out = nn.Linear(hidden, vocab_size)
        self.drop = nn.Dropout(dropout)

    def encode(
        self, src: torch.Tensor, src_len: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """src [B, T] ids padded at the end, src_len [B] → memory [B, T, 2H], keys [B, T, H], h0, c0 [1, B, H]."""
        reverse = reverse_within_length(src_len, src.size(1))
        x = self.drop(self.embed(src))
        fwd, _ = self.enc_fwd(x)
        bwd_rev, _ = self.enc_bwd(gather_time(x, reverse))
        bwd = gather_time(bwd_rev, reverse)
        memory = torch.cat([fwd, bwd], dim=-1)
        last = (src_len - 1)[:, None, None].expand(-1, 1, fwd.size(2))
        summary = torch.cat([fwd.gather(1, last), bwd_rev.gather(1, last)], dim=-1).squeeze(1)
        h0, c0 = torch.tanh(self.bridge(summary)).chunk(2, dim=-1)
        return memory, self.attn_key(memory), h0[None].contiguous(), c0[None].contiguous()

    def decode(
        self,
        tokens: torch.Tensor,
        h: torch.Tensor,
        c: torch.Tensor,
        memory: torch.Tensor,
        keys: torch.Tensor,
        bias: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """tokens [B, L] → logits [B, L, V] and the new (h, c); L is the whole target in training, 1 when decoding
        step by step (the served step graph, training/export/speller.py, computes the same from the encoder's values).

        memory [W, T, 2H], keys [W, T, H] and bias [W, T] are per source word; the B rows come in W equal
        groups of consecutive rows, one per word (B = W in training; a word's beam hypotheses when serving).
        Each word's encoder outputs are read once for all its rows instead of being copied to every row."""
        y, (h, c) = self.decoder(self.drop(self.embed(tokens)), (h, c))
        rows, length = y.size(0), y.size(1)
        context = torch.bmm(attention(y, keys, bias), memory).reshape(rows, length, memory.size(2))
        mixed = torch.tanh(self.combine(self.drop(torch.cat([y, context], dim=-1))))
        return self.out(self.drop(mixed)), h, c

    def forward(self, src: torch.Tensor, src_len: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: the whole target sequence in one decoder call."""
        memory, keys, h, c = self.encode(src, src_len)
        logits, _, _ = self.decode(tgt_in, h, c, memory, keys, mask_bias(src_len, src.size(1)))
        return logits

    @torch.no_grad()
    def greedy(self, src: torch.Tensor, src_len: torch.Tensor, sos: int, eos: int, max_steps: int) -> torch.Tensor:
        """Batched greedy decoding → [B, max_steps] ids (eos then anything after it is to be cut)."""
        memory, keys, h, c = self.encode(src, src_len)
        bias = mask_bias(src_len, src.size(1))
        token = torch.full((src.size(0), 1), sos, dtype=torch.long, device=src.device)
        outputs = []
        done = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
        for _ in range(max_steps):
            logits, h, c = self.decode(token, h, c, memory, keys, bias)
            token = logits.argmax(-1)
            outputs.append(token)
            done |= token[:, 0] == eos
            if bool(done.all()):
                break
        return torch.cat(outputs, dim=1)
