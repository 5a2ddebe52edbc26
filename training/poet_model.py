"""The poet: a character language model as in PyTorch's word_language_model (embedding, LSTM, linear).

Its whole memory between characters is (h, c), so serving runs it one step at a time in batches with
the state as explicit graph inputs and outputs (`step`).
"""

from __future__ import annotations

import torch
from torch import nn


class PoetLM(nn.Module):
    def __init__(
        self, vocab_size: int, emb: int = 256, hidden: int = 512, layers: int = 2, dropout: float = 0.2
    ) -> None:
        super().__init__()
        self.config = {"vocab_size": vocab_size, "emb": emb, "hidden": hidden, "layers": layers, "dropout": dropout}
        self.embed = nn.Embedding(vocab_size, emb)
        self.rnn = nn.LSTM(emb, hidden, layers, dropout=dropout if layers > 1 else 0.0, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, vocab_size)
        self.init_weights()

    def init_weights(self) -> None:
        """Xavier for every matrix, zero biases except the forget gates' (1: remember by default at the start)."""
        for name, param in self.named_parameters():
            if param.dim() > 1:
                nn.init.xavier_uniform_(param)
            else:
                nn.init.zeros_(param)
                if name.startswith("rnn.bias_ih"):
                    hidden = param.numel() // 4
                    param.data[hidden : 2 * hidden] = 1.0  # PyTorch gate order: input, forget, cell, output

    def initial_state(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (self.config["layers"], batch, self.config["hidden"])
        return torch.zeros(shape), torch.zeros(shape)

    def forward(
        self, ids: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """ids [B, T] → logits [B, T, V] and the state after the last position."""
        output, state = self.rnn(self.drop(self.embed(ids)), state)
        return self.out(self.drop(output)), state

    def step(
        self, token: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One character for each row: token [B], h and c [layers, B, H] → logits [B, V], h, c."""
        logits, (h, c) = self.forward(token[:, None], (h, c))
        return logits[:, 0], h, c
