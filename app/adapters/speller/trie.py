"""A dictionary as a character trie in two numpy tables, for constrained greedy decoding in batches.

Each decoding step looks up the allowed next tokens of every sequence at once (`allowed[nodes]`)
and moves every sequence to its child at once (`children[nodes, tokens]`): no per-sequence Python.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

ROOT = 0


class DictionaryTrie:
    def __init__(
        self, counts: Iterable[tuple[str, int]], char_ids: dict[str, int], vocab_size: int, eos_id: int
    ) -> None:
        rows: list[list[int]] = [[-1] * vocab_size]
        terminal = [False]
        word_count = [0]
        for word, count in counts:
            if not word or any(ch not in char_ids for ch in word):
                continue
            node = ROOT
            for ch in word:
                nxt = rows[node][char_ids[ch]]
                if nxt < 0:
                    nxt = len(rows)
                    rows[node][char_ids[ch]] = nxt
                    rows.append([-1] * vocab_size)
                    terminal.append(False)
                    word_count.append(0)
                node = nxt
            terminal[node] = True
            word_count[node] += count
        self.children = np.asarray(rows, dtype=np.int32)
        is_terminal = np.asarray(terminal, dtype=bool)
        self.allowed = self.children >= 0
        self.allowed[:, eos_id] = is_terminal  # a word may end only where a dictionary word ends
        self.eos_id = eos_id
        # log P(word) at the node where the word ends: the prior that reranks finished hypotheses.
        total = max(sum(word_count), 1)
        counts_array = np.asarray(word_count, dtype=np.float64)
        self.log_prior = np.where(is_terminal, np.log(np.maximum(counts_array, 1) / total), 0).astype(np.float32)
        self.min_log_prior = float(self.log_prior[is_terminal].min()) if is_terminal.any() else 0.0
        self.best_log_prior_below = self._best_below(np.where(is_terminal, self.log_prior, -np.inf))

    def _best_below(self, value: np.ndarray) -> np.ndarray:
        """[nodes] the largest `value` of a node and of every node under it: the best prior any word that
        continues a prefix can have. One array operation per depth of the trie, deepest first."""
        levels = [np.array([ROOT])]
        while len(levels[-1]):
            below = self.children[levels[-1]]
            levels.append(below[below >= 0])
        best = value.astype(np.float32)
        for nodes in reversed(levels[:-1]):
            kids = self.children[nodes]
            best[nodes] = np.maximum(best[nodes], np.where(kids >= 0, best[kids], -np.inf).max(axis=1))
        return best

    @property
    def size(self) -> int:
        return len(self.children)

    def step(self, nodes: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Move each sequence along its chosen token; an ended sequence goes nowhere (stays put)."""
        return np.where(tokens == self.eos_id, nodes, self.children[nodes, tokens])
