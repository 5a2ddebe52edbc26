"""The speller's running batch: the words being corrected and the decoder rows that search for them.

Each word is searched two ways, every step one decoder call per way over all the batch's words: `beam` holds
the dictionary-constrained beam search, one row per live hypothesis (at most `beam_size`; every word of the
batch gets as many rows as the word with the most, though only live ones are decoded), and `open` one row per
word (the unconstrained greedy pass, present only when the speller may answer a word outside its
dictionary). A word's greedy row waits in
`parked` until its beam search has ended, and runs only if it could still change the answer.
A word whose search has ended leaves its row group at once, so later steps pay only for live rows; the
word itself leaves the batch when both of its searches have ended.

Words can join a running batch (`concat`) and leave it (`take`) between two steps: this is what lets
app/engine/continuous.py batch words continuously across requests.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from app.adapters.speller import beam_step as compiled

NEG_INF = np.float32(-1e9)


def _pad_time(x: np.ndarray, width: int, fill: float) -> np.ndarray:
    """[N, T, ...] → [N, width, ...], the new positions set to `fill`."""
    extra = width - x.shape[1]
    if extra <= 0:
        return x
    pad = [(0, 0)] * x.ndim
    pad[1] = (0, extra)
    return np.pad(x, pad, constant_values=fill)


@dataclass
class DecoderRows:
    """Rows of the decoder graph, `group` consecutive rows per word (its beam hypotheses, or its one greedy row),
    and the encoder outputs of those words, once per word: the graph reads them for all of a word's rows."""

    group: int  # rows per word
    word: np.ndarray  # [N] int64: the word (index into the batch) each row decodes
    token: np.ndarray  # [N] int64: the next input
    h: np.ndarray  # [layers, N, hidden]
    c: np.ndarray
    nodes: np.ndarray  # [N] int32: the trie node reached (beam rows)
    history: np.ndarray  # [N, max_steps] int64: tokens written (beam rows)
    # The edit distance (OSA) of the row's spelling so far to every prefix of its misspelling, and the same one
    # character earlier (for transpositions): [N, max_len + 1] int32 on beam rows, [N, 0] on greedy rows.
    edits: np.ndarray
    edits_prev: np.ndarray
    values: np.ndarray  # [N / group, T, hidden]: the encoder's attention values, padded to the longest word
    keys: np.ndarray  # [N / group, T, key]
    bias: np.ndarray  # [N / group, T]: 0 inside the word, NEG_INF on padding (an attention mask)

    ROW_FIELDS = ("word", "token", "h", "c", "nodes", "history", "edits", "edits_prev")
    WORD_FIELDS = ("values", "keys", "bias")

    def __len__(self) -> int:
        return len(self.word)

    def take(self, keep: np.ndarray) -> DecoderRows:
        """The rows where the boolean mask `keep` is set (whole words: all of a word's rows or none), their
        padding cut to the longest word left."""
        if keep.all():
            return self
        return self.gathered(keep[:: self.group], **self._rows_at(keep))

    def gathered(self, words: np.ndarray, **rows: np.ndarray | int) -> DecoderRows:
        """New per-row fields `rows` (already gathered by the caller) for the words where the boolean mask `words`
        is set, in their order: the words' encoder outputs follow, their padding cut as `take` cuts it."""
        if words.all():
            return replace(self, **rows)
        return self._cut(replace(self, **rows, **{k: getattr(self, k)[words] for k in self.WORD_FIELDS}))

    @staticmethod
    def _cut(rows: DecoderRows) -> DecoderRows:
        """Attention padding cut to the longest word left: later steps attend over less of it."""
        width = int((rows.bias == 0).sum(axis=1).max(initial=0))
        if 0 < width < rows.bias.shape[1]:
            rows.values, rows.keys, rows.bias = rows.values[:, :width], rows.keys[:, :width], rows.bias[:, :width]
        return rows

    def _rows_at(self, index: np.ndarray) -> dict[str, np.ndarray]:
        """The per-row fields at `index` (a mask or positions); h and c hold their rows on axis 1."""
        return {k: getattr(self, k)[:, index] if k in ("h", "c") else getattr(self, k)[index] for k in self.ROW_FIELDS}

    def inputs(self, live: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The decoder graph's feeds for each word's first `live[w]` rows (its live hypotheses, which the beam
        keeps first; all rows when None), and where those rows stand among this batch's. The graph computes only
        them and places them in this batch's layout of equal groups for attention (training/export.py: `slots`
        per row; `slot_rows`, for each place of that layout, the row it reads: a place no live row fills reads
        its word's first row)."""
        words = len(self.values)
        if live is None or (live >= self.group).all():
            rows = np.arange(len(self), dtype=np.int64)
            feeds = {"token": self.token, "h": self.h, "c": self.c}
            slot_rows = rows
        else:
            rows, slot_rows = compiled.live_layout(live, self.group)
            feeds = {"token": self.token[rows], "h": self.h[:, rows], "c": self.c[:, rows]}
        assert len(slot_rows) == words * self.group
        feeds |= {"values": self.values, "keys": self.keys, "bias": self.bias, "slots": rows, "slot_rows": slot_rows}
        return feeds, rows

    def widen(self, group: int) -> DecoderRows:
        """The same words with `group` rows each: every word's last row repeated. The beam scores the added
        rows -inf (a word has no more live hypotheses than rows), so they never win."""
        if group == self.group:
            return self
        rows = np.arange(len(self)).reshape(-1, self.group)
        rows = np.concatenate([rows, np.repeat(rows[:, -1:], group - self.group, axis=1)], axis=1).ravel()
        return replace(self, group=group, **self._rows_at(rows))

    @staticmethod
    def concat(parts: list[DecoderRows], offsets: list[int]) -> DecoderRows:
        """Rows of several batches as one; `offsets[i]` is where batch i's words start in the joined batch. Each
        word gets as many rows as the widest batch's words have."""
        width = max(p.values.shape[1] for p in parts)
        group = max(p.group for p in parts)
        padded = [
            replace(
                p,
                word=p.word + offset,
                values=_pad_time(p.values, width, 0.0),
                keys=_pad_time(p.keys, width, 0.0),
                bias=_pad_time(p.bias, width, NEG_INF),
            )
            for p, offset in zip((p.widen(group) for p in parts), offsets, strict=True)
        ]
        return DecoderRows(
            group=group,
            **{
                k: np.concatenate([getattr(p, k) for p in padded], axis=1 if k in ("h", "c") else 0)
                for k in DecoderRows.ROW_FIELDS + DecoderRows.WORD_FIELDS
            },
        )


@dataclass
class SpellRows:
    """The words being corrected together (index w in every per-word array) and their decoder rows."""

    words: np.ndarray  # [W] str (object): the lowercase misspellings
    target: np.ndarray  # [W, max_len] int64: their character ids, -1 past each word's end
    length: np.ndarray  # [W] int64: their lengths
    step: np.ndarray  # [W] int64: decoding steps done
    score: np.ndarray  # [W, beam] float32: log-probability of each live hypothesis (-inf: none)
    final_score: np.ndarray  # [W, K] float32: the K best finished dictionary words' reranked scores, best first
    final_ids: np.ndarray  # [W, K, max_steps] int64: those words' tokens, each ending in eos
    open_total: np.ndarray  # [W] float32: the greedy pass's log-probability
    open_ids: np.ndarray  # [W, max_steps] int64: the greedy pass's tokens
    open_len: np.ndarray  # [W] int64: tokens the greedy pass has written
    beam: DecoderRows  # beam_size rows per word still searching, a word's rows next to each other
    open: DecoderRows  # one row per word whose greedy pass is writing
    parked: DecoderRows  # one row per word whose greedy pass waits for its beam search to end

    DECODERS = ("beam", "open", "parked")

    def __len__(self) -> int:
        return len(self.words)

    def finished(self) -> np.ndarray:
        """[W] bool: words with no live row left."""
        live = np.zeros(len(self), dtype=bool)
        for rows in (self.beam, self.open, self.parked):
            live[rows.word] = True
        return ~live

    def take(self, keep: np.ndarray) -> SpellRows:
        """The words where the boolean mask `keep` is set, with their rows, renumbered."""
        renumber = np.cumsum(keep) - 1
        decoders = {}
        for name in self.DECODERS:
            rows = getattr(self, name)
            kept = rows.take(keep[rows.word])
            decoders[name] = replace(kept, word=renumber[kept.word])
        per_word = {f.name: getattr(self, f.name)[keep] for f in fields(self) if f.name not in self.DECODERS}
        return SpellRows(**per_word, **decoders)

    @staticmethod
    def concat(parts: list[SpellRows]) -> SpellRows:
        offsets = list(np.cumsum([0] + [len(p) for p in parts[:-1]]))
        per_word = {
            f.name: np.concatenate([getattr(p, f.name) for p in parts])
            for f in fields(SpellRows)
            if f.name not in SpellRows.DECODERS
        }
        decoders = {name: DecoderRows.concat([getattr(p, name) for p in parts], offsets) for name in SpellRows.DECODERS}
        return SpellRows(**per_word, **decoders)
