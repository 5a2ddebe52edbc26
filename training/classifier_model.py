"""The classifier: a character LSTM over an entity's name → one of five types.

Two configurations of one module:
- the lab's baseline: one-hot characters, one LSTM (hidden 50) reading the name reversed, its final
  state through a ReLU layer into the softmax;
- ours: learned embeddings, an LSTM in each direction over the full name, and beside their final
  states a max over time of their outputs (a word anywhere in the name, `film` or `FC`, can decide).
"""

from __future__ import annotations

import torch
from torch import nn

from training.sequence import gather_time, reverse_within_length

NEG_LARGE = -1e4  # fills padding before the max over time; finite so that gradients stay finite
HASH_MODULUS = 2_147_483_647  # n-gram hashes stay below 2^31, so the int64 arithmetic never overflows
HASH_BASE = 1_000_003


def hashed_ngrams(ids: torch.Tensor, lengths: torch.Tensor, n_max: int, buckets: int) -> tuple[torch.Tensor, ...]:
    """Every character n-gram (1 to n_max) of each name as a bucket id, computed from the character ids in
    the graph itself: [B, T, n_max] ids and a [B, T, n_max] mask of the n-grams that lie inside the name."""
    positions = torch.arange(ids.size(1), device=ids.device)[None, :]
    h = torch.zeros_like(ids)
    grams, inside = [], []
    for n in range(1, n_max + 1):
        shifted = torch.cat([ids[:, n - 1 :], torch.zeros_like(ids[:, : n - 1])], dim=1)  # ids[:, i + n - 1]
        h = torch.remainder(h * HASH_BASE + shifted + 1, HASH_MODULUS)
        grams.append(torch.remainder(h * (2 * n + 1), buckets))  # n folded in: equal hashes of unequal n differ
        inside.append(positions + n <= lengths[:, None])
    return torch.stack(grams, dim=-1), torch.stack(inside, dim=-1)


class NameClassifier(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        classes: int,
        emb: int = 64,
        hidden: int = 256,
        dense: int = 256,
        bidirectional: bool = True,
        max_pool: bool = True,
        dropout: float = 0.3,
        ngram_buckets: int = 0,
        ngram_dim: int = 32,
        ngram_max: int = 5,
        lexicon: int = 0,
    ) -> None:
        super().__init__()
        self.config = {
            "vocab_size": vocab_size, "classes": classes, "emb": emb, "hidden": hidden, "dense": dense,
            "bidirectional": bidirectional, "max_pool": max_pool, "dropout": dropout,
            "ngram_buckets": ngram_buckets, "ngram_dim": ngram_dim, "ngram_max": ngram_max, "lexicon": lexicon,
        }  # fmt: skip
        if emb:
            self.embed = nn.Embedding(vocab_size, emb, padding_idx=0)
        else:  # one-hot characters, as the lab's model read them
            self.embed = nn.Embedding.from_pretrained(torch.eye(vocab_size), freeze=True, padding_idx=0)
        # Optional: `lexicon` more inputs per character beside its embedding (training/classifier_data.py's
        # lexicon_spans: what a word list knows of the word the character sits in).
        width = (emb or vocab_size) + lexicon
        # The reversed reader comes first: with bidirectional=False it is the lab's whole model.
        self.rnn_bwd = nn.LSTM(width, hidden, batch_first=True)
        self.rnn_fwd = nn.LSTM(width, hidden, batch_first=True) if bidirectional else None
        # Optional: the mean embedding of the name's hashed character n-grams (fastText's bag), the signal a
        # linear model over n-grams lives on, beside what the LSTMs read in order.
        self.ngrams = nn.Embedding(ngram_buckets, ngram_dim) if ngram_buckets else None
        self.ngram_buckets, self.ngram_max = ngram_buckets, ngram_max
        features = hidden * (2 if bidirectional else 1) * (2 if max_pool else 1) + (ngram_dim if ngram_buckets else 0)
        self.hidden = nn.Linear(features, dense)
        self.out = nn.Linear(dense, classes)
        self.drop = nn.Dropout(dropout)
        self.max_pool = max_pool

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, lexicon: torch.Tensor | None = None) -> torch.Tensor:
        """ids [B, T] padded at the end, lengths [B] (each ≥ 1), lexicon [B, T, config lexicon] when the model
        reads one → logits [B, classes]."""
        x = self.embed(ids)
        if self.config["lexicon"]:
            x = torch.cat([x, lexicon], dim=-1)
        x = self.drop(x)
        reverse = reverse_within_length(lengths, ids.size(1))
        bwd_rev, _ = self.rnn_bwd(gather_time(x, reverse))
        outputs = [bwd_rev]
        if self.rnn_fwd is not None:
            fwd, _ = self.rnn_fwd(x)
            outputs.append(fwd)
        last = (lengths - 1)[:, None]
        features = [gather_time(o, last).squeeze(1) for o in outputs]  # each reader's state after the whole name
        if self.max_pool:
            real = (torch.arange(ids.size(1), device=ids.device)[None, :] < lengths[:, None])[:, :, None]
            features += [torch.where(real, o, NEG_LARGE).amax(dim=1) for o in outputs]
        if self.ngrams is not None:
            grams, inside = hashed_ngrams(ids, lengths, self.ngram_max, self.ngram_buckets)
            weights = inside.to(x.dtype)
            bag = (self.ngrams(grams) * weights[..., None]).sum(dim=(1, 2)) / weights.sum(dim=(1, 2))[:, None]
            features.append(self.drop(bag))
        h = torch.relu(self.hidden(self.drop(torch.cat(features, dim=-1))))
        return self.out(self.drop(h))


class NameClassifierEnsemble(nn.Module):
    """Several NameClassifiers trained alike (different seeds) voting with their probabilities.

    Returns the log of the mean probability, so a softmax on top gives that mean back.
    """

    def __init__(self, members: list[NameClassifier]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, lexicon: torch.Tensor | None = None) -> torch.Tensor:
        probs = torch.stack([torch.softmax(m(ids, lengths, lexicon), dim=-1) for m in self.members]).mean(dim=0)
        return torch.log(probs)
