"""One step of the speller's dictionary-constrained beam search, for every word of a batch: the source that
beam_step.py serves compiled, either ahead of time (the CPU image's extension module) or by numba at run time.

The decoder graph computes every row's next-character logits in one call; what follows is per-word
bookkeeping over a few dozen numbers (pick a word's best continuations, extend their edit-distance rows,
score the ones that end a word, decide whether the word is done). In numpy that was some ninety small array
operations a step whatever the batch, most of a step's time when a lightly loaded server calls the speller
with a word or three; compiled it is one call, and the GIL is released while it runs so the event loop keeps
answering. See Speller._beam_step for how its results become the next step's rows, docs/design.md for why.

This module imports without numba (its functions are then plain Python, which beam_step.py never serves):
the CPU image carries only the module compiled from it, and checks it against this file's digest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

try:
    from numba import njit
except ImportError:  # an install that serves the ahead-of-time module only (docker/Dockerfile)
    njit = None


def compiled(func: Callable[..., Any]) -> Any:
    """`func` compiled on its first call, the GIL released while it runs, and the machine code kept on disk
    (beside the module, or in NUMBA_CACHE_DIR) for the next start. Where no such folder is writable (a
    read-only install or file system) numba refuses to cache at all: it then compiles at every start.
    Without numba, `func` itself: the source the ahead-of-time module was compiled from."""
    if njit is None:
        return func
    try:
        return njit(cache=True, nogil=True)(func)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return njit(nogil=True)(func)


# The one signature each function is called with (numba's notation; `[::1]`: C-contiguous), which the
# ahead-of-time module is compiled for, and which numba's JIT compiles from the speller's arrays
# (app/adapters/speller/rows.py, trie.py; tests/test_training_contract.py holds the two equal).
_ROWS = "int32[::1], int64[::1], int64[:, ::1], int32[:, ::1], int32[:, ::1]"  # nodes, token, history, edits, prev
_WORDS = "float32[:, ::1], int64[::1], int64[:, ::1], int64[::1], float32[:, ::1], int64[:, :, ::1]"
_TRIE = "boolean[:, ::1], int32[:, ::1], float32[::1], float32[::1]"
_NEXT = "int64[::1], int64[::1], int32[::1], int64[:, ::1], int32[:, ::1], int32[:, ::1]"  # parent, token, nodes, ...
SIGNATURES = {
    "extend_edits_row": "void(int32[::1], int32[::1], int64, int64, int64[::1], int32[::1])",
    "extend_edits": "int32[:, ::1](int32[:, ::1], int32[:, ::1], int64[::1], int64[::1], int64[:, ::1])",
    "beam_step": f"Tuple((float32[:, ::1], boolean[::1], int64, {_NEXT}))"
    f"(float32[:, ::1], int64[::1], int64[::1], int64, int64, {_ROWS}, {_WORDS}, {_TRIE},"
    " int64, float64, float64, int64, float64)",
    "live_counts": "int64[::1](float32[:, ::1], int64[::1], int64)",
    "live_layout": "UniTuple(int64[::1], 2)(int64[::1], int64)",
}


EDITS_MAX = np.iinfo(np.int32).max  # beyond any edit distance: what a position past a misspelling's end holds


@compiled
def extend_edits_row(
    edits: np.ndarray, edits_prev: np.ndarray, last: int, token: int, target: np.ndarray, out: np.ndarray
) -> None:
    """One more row of the OSA edit-distance table: `edits` [L + 1] holds the distances of a spelling to each
    prefix of its misspelling `target` [L] (-1 past its end), `edits_prev` the same without its last character
    `last`; `out` gets them for the spelling followed by `token`."""
    out[0] = edits[0] + 1
    for j in range(1, len(edits)):
        best = min(edits[j] + 1, edits[j - 1] + (target[j - 1] != token))  # skip `token`, or match it
        if j >= 2 and token == target[j - 2] and last == target[j - 1]:  # "ab" against "ba"
            best = min(best, edits_prev[j - 2] + 1)
        out[j] = min(best, out[j - 1] + 1)  # skip a misspelling character


@compiled
def extend_edits(
    edits: np.ndarray, edits_prev: np.ndarray, last: np.ndarray, token: np.ndarray, target: np.ndarray
) -> np.ndarray:
    """`extend_edits_row` for every row of [K, L + 1] tables at once."""
    out = np.empty_like(edits)
    for k in range(len(edits)):
        extend_edits_row(edits[k], edits_prev[k], last[k], token[k], target[k], out[k])
    return out


@compiled
def beam_step(
    # the decoder's output [D, V] for the D rows it decoded, and each of the R rows' place among them (read for
    # live rows only); the words of the rows, `group` rows each; hypotheses kept per word
    logits: np.ndarray,
    decoded_at: np.ndarray,
    here: np.ndarray,
    group: int,
    beam: int,
    # the rows' state: trie node, last token, tokens so far, edit-table rows (see app/adapters/speller/rows.py)
    row_nodes: np.ndarray,
    row_token: np.ndarray,
    row_history: np.ndarray,
    row_edits: np.ndarray,
    row_edits_prev: np.ndarray,
    # per word of the batch (SpellRows); `final_score` and `final_ids` (its best finished words) are updated in place
    score: np.ndarray,
    step: np.ndarray,
    target: np.ndarray,
    length: np.ndarray,
    final_score: np.ndarray,
    final_ids: np.ndarray,
    # the dictionary trie's tables (app/adapters/speller/trie.py)
    allowed: np.ndarray,
    children: np.ndarray,
    log_prior: np.ndarray,
    best_below: np.ndarray,
    eos: int,
    prior_weight: float,
    edit_penalty: float,
    max_steps: int,
    prune_margin: float,
) -> tuple[np.ndarray, np.ndarray, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each word's `beam` best continuations of its live hypotheses (those scoring above -inf), the words that
    end among them (kept if among the word's K best so far: `final_score` [W, K], best first, and their tokens
    `final_ids` [W, K, max_steps]; the first is the answer, the others its alternatives), and its hypotheses for
    the next step; a continuation more than `prune_margin` below
    its word's best candidate of the step is dropped (np.inf: none is). Returns the words' scores [n, beam] (live
    ones first, best first), which words still search, and the next step's rows: `width` per searching word,
    its live hypotheses then dead padding, as (parent, token, trie node, history, edits, edits_prev); a parent
    is a decoded row (the place of its h and c in the decoder's output)."""
    n, vocab = len(here), logits.shape[1]
    top_score = np.full((n, beam), -np.inf, dtype=np.float32)
    top_index = np.zeros((n, beam), dtype=np.int64)  # row * vocab + token
    new_edits = np.empty((n, beam, row_edits.shape[1]), dtype=row_edits.dtype)
    live_count = np.zeros(n, dtype=np.int64)
    live_at = np.zeros((n, beam), dtype=np.int64)  # where each word's live candidates stand in its top list
    new_score = np.full((n, beam), -np.inf, dtype=np.float32)
    for w in range(n):
        word = here[w]
        for j in range(group):
            r = w * group + j
            prior_score = score[word, j]
            if prior_score == -np.inf:  # a dead row: padding, or a hypothesis that ended
                continue
            row_logits = logits[decoded_at[r]]
            peak = row_logits[0]
            for v in range(1, vocab):
                peak = max(peak, row_logits[v])
            mass = np.float32(0)
            for v in range(vocab):
                mass += np.exp(row_logits[v] - peak)
            norm = np.log(mass)
            for v in range(vocab):
                if not allowed[row_nodes[r], v]:
                    continue
                total = prior_score + ((row_logits[v] - peak) - norm)
                if total <= top_score[w, beam - 1]:
                    continue
                k = beam - 1  # insert, keeping the list sorted best first (earlier rows first among equals)
                while k > 0 and top_score[w, k - 1] < total:
                    top_score[w, k], top_index[w, k] = top_score[w, k - 1], top_index[w, k - 1]
                    k -= 1
                top_score[w, k], top_index[w, k] = total, r * vocab + v
        # Score the candidates that end a word; bound what the others can still reach.
        reach = -np.inf
        at = step[word]
        kept = final_score.shape[1]
        for k in range(beam):
            s = top_score[w, k]
            if s == -np.inf:
                break
            r, token = top_index[w, k] // vocab, top_index[w, k] % vocab
            if token == eos:
                # A whole dictionary word: reranked with its prior, less its distance to the misspelling.
                final = s + prior_weight * log_prior[row_nodes[r]] - edit_penalty * row_edits[r, length[word]]
                if final > final_score[word, kept - 1]:  # among the K best: insert it, best first
                    i = kept - 1
                    while i > 0 and final_score[word, i - 1] < final:
                        final_score[word, i] = final_score[word, i - 1]
                        final_ids[word, i] = final_ids[word, i - 1]
                        i -= 1
                    final_score[word, i] = final
                    final_ids[word, i] = row_history[r]
                    final_ids[word, i, at] = eos
                continue
            if s < top_score[w, 0] - prune_margin:  # far behind: keeping it costs rows, and it is rarely the answer
                continue
            extend_edits_row(row_edits[r], row_edits_prev[r], row_token[r], token, target[word], new_edits[w, k])
            least = EDITS_MAX  # any word it becomes is at least this far from the misspelling
            for j in range(length[word] + 1):
                least = min(least, new_edits[w, k, j])
            child = children[row_nodes[r], token]
            # Its score only falls; the best prior under its trie node is the most its word can add.
            reach = max(reach, s + prior_weight * best_below[child] - edit_penalty * least)
            new_score[w, live_count[w]] = s
            live_at[w, live_count[w]] = k
            live_count[w] += 1
        if final_score[word, 0] >= reach or at + 1 >= max_steps:  # nothing left can beat the answer, or out of steps
            live_count[w] = 0
            new_score[w] = -np.inf

    width = max(live_count.max(), 1)
    searching = live_count > 0
    rows = searching.sum() * width
    parent = np.empty(rows, dtype=np.int64)
    token_out = np.empty(rows, dtype=row_token.dtype)
    nodes_out = np.zeros(rows, dtype=row_nodes.dtype)  # the root, for padding rows
    history_out = np.empty((rows, row_history.shape[1]), dtype=row_history.dtype)
    edits_out = np.empty((rows, row_edits.shape[1]), dtype=row_edits.dtype)
    edits_prev_out = np.empty((rows, row_edits.shape[1]), dtype=row_edits.dtype)
    out = 0
    for w in range(n):
        if not searching[w]:
            continue
        first = out
        for i in range(live_count[w]):  # the word's live hypotheses, best first
            k = live_at[w, i]
            r, token = top_index[w, k] // vocab, top_index[w, k] % vocab
            parent[out], token_out[out] = decoded_at[r], token
            nodes_out[out] = children[row_nodes[r], token]
            history_out[out] = row_history[r]
            history_out[out, step[here[w]]] = token
            edits_out[out] = new_edits[w, k]
            edits_prev_out[out] = row_edits[r]
            out += 1
        for _ in range(live_count[w], width):  # dead padding (scored -inf): copies of the word's first row
            parent[out], token_out[out] = parent[first], token_out[first]
            history_out[out] = history_out[first]
            edits_out[out] = edits_out[first]
            edits_prev_out[out] = edits_prev_out[first]
            out += 1
    return new_score, searching, width, parent, token_out, nodes_out, history_out, edits_out, edits_prev_out


@compiled
def live_counts(score: np.ndarray, here: np.ndarray, group: int) -> np.ndarray:
    """Each word's live hypotheses among its first `group` (scored above -inf; the beam keeps them first), and
    at least one: a word's first row is always decoded."""
    live = np.empty(len(here), dtype=np.int64)
    for w in range(len(here)):
        count = 0
        for j in range(group):
            count += score[here[w], j] != -np.inf
        live[w] = max(count, 1)
    return live


@compiled
def live_layout(live: np.ndarray, group: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows in groups of `group` a word, of which each word's first `live[w]` are decoded: the decoded rows'
    positions, and for every row the place among them of the decoded row it reads (its own, or for a row not
    decoded its word's first, whose results it never uses). Compiled: a handful of small array operations on
    every decoding step otherwise."""
    n = len(live)
    rows = np.empty(live.sum(), dtype=np.int64)
    decoded_at = np.empty(n * group, dtype=np.int64)
    out = 0
    for w in range(n):
        first = out
        for j in range(group):
            if j < live[w]:
                rows[out] = w * group + j
                decoded_at[w * group + j] = out
                out += 1
            else:
                decoded_at[w * group + j] = first
    return rows, decoded_at
