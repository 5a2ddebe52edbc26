"""How sure the speller is of an answer: the evidence about each candidate word, and the calibrated probability
that it is the word the writer meant.

The evidence is the beam's own (a candidate's reranked score, its margin over the others, its distance from the
unknown word, its frequency, whether the open-vocabulary pass spelled it), how English the unknown word looks
(a character trigram model of the dictionary) and how it is written in its sentence (capitalised inside a
sentence, all capitals). A logistic regression over these, fitted on validation data by
training/speller_confidence.py and kept in the manifest, turns them into a probability: numpy only here.
Where the word stands also picks its threshold (CONTEXTS): names seldom stand as a lowercase word with no
capitalised word beside it, so such a word needs less confidence before it is corrected.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rapidfuzz.distance import OSA

FEATURES = (
    "score",  # the candidate's reranked beam score / 10, at least -4
    "margin",  # its score less the best other candidate's / 10, within ±2 (+2: no other)
    "edits",  # OSA distance from the unknown word, at most 5
    "edit_share",  # that distance per character of the unknown word
    "log_count",  # log10 of the candidate's dictionary count / 10 (0: not in the dictionary)
    "open",  # 1: spelled by the open-vocabulary pass, not found in the dictionary
    "length",  # the unknown word's length / 10
    "english",  # the unknown word's mean character trigram log-probability under the dictionary
    "same_first",  # 1: the candidate starts with the unknown word's letter
    "title_inside",  # 1: Capitalised, not at the start of a sentence (a name, most often)
    "title_start",  # 1: Capitalised at the start of a sentence
    "upper",  # 1: ALL CAPITALS (an acronym, most often)
    "after_name",  # 1: right after a capitalised word no dictionary knows, no near misspelling ("Acacia dealbata")
    "before_name",  # 1: right before a capitalised word no dictionary knows ("da Novara")
    "after_capitalised",  # 1: right after any capitalised word inside a sentence ("Banksia epica", "Paris cafe")
)
# The model's evidence means something else for a capitalised word (most are names): each has its own weight there.
EVIDENCE = FEATURES[:9]
FEATURES = FEATURES + tuple(f"{name}_capitalised" for name in EVIDENCE)

# Where an unknown word stands, each with its own threshold tuned on validation data: "lowercase", a lowercase
# word beside no name ("recieve", "The dissaperd cat"); "capitalised", a word written with capitals or beside a
# name ("Seatle", "Acacia dealbata", "Nepenthes gracillima"), where names are.
CONTEXTS = ("lowercase", "capitalised")


def context(shape: str, beside_names: tuple[bool, ...]) -> str:
    """The word's CONTEXTS entry from its case_shape and whether each of its neighbours may be a name."""
    return "lowercase" if shape == "lower" and not any(beside_names) else "capitalised"


@dataclass(frozen=True)
class Candidate:
    word: str
    score: float  # the beam's reranked score (docs/speller.md)
    open: bool = False  # spelled by the open-vocabulary (greedy) pass, outside the dictionary


@dataclass(frozen=True)
class WordAnswer:
    """What decoding found for one lowercase unknown word: its candidates, the answer first, and their evidence
    ([candidates, EVIDENCE]: answer_evidence), found with them in the model's thread since it is the costly part
    of a confidence and the same wherever the word stands."""

    word: str
    candidates: tuple[Candidate, ...]
    evidence: np.ndarray = field(compare=False, repr=False)


class EnglishLikeness:
    """A character trigram model of the dictionary's words (each word once, add-one smoothed): the mean
    log-probability of a word's trigrams says how much it looks like an English word. Names and foreign words
    (`Skenfrith`, `Aadhiyugam`) score low."""

    SYMBOLS = 27  # a-z and the word boundary

    def __init__(self, words: Iterable[str]) -> None:
        grams = np.zeros(self.SYMBOLS**3, dtype=np.float64)
        for word in words:
            ids = self._ids(word)
            if ids is not None:
                np.add.at(grams, self._trigrams(ids), 1)
        contexts = grams.reshape(-1, self.SYMBOLS).sum(axis=1, keepdims=True)
        self.log_prob = np.log((grams.reshape(-1, self.SYMBOLS) + 1) / (contexts + self.SYMBOLS)).ravel()

    @staticmethod
    def _ids(word: str) -> np.ndarray | None:
        codes = np.frombuffer(word.encode("ascii", "replace"), dtype=np.uint8).astype(np.int64) - ord("a") + 1
        if ((codes < 1) | (codes > 26)).any():
            return None
        return np.concatenate([[0, 0], codes, [0]])

    def _trigrams(self, ids: np.ndarray) -> np.ndarray:
        return (ids[:-2] * self.SYMBOLS + ids[1:-1]) * self.SYMBOLS + ids[2:]

    def __call__(self, word: str) -> float:
        ids = self._ids(word)
        return float(self.log_prob[self._trigrams(ids)].mean()) if ids is not None else float(np.log(1 / 27))


def answer_evidence(
    word: str, candidates: tuple[Candidate, ...], english: float, log_count: dict[str, float]
) -> np.ndarray:
    """[candidates, EVIDENCE]: what the beam and the dictionary say of each candidate for the unknown `word`
    (`english`: its EnglishLikeness)."""
    scores = np.array([c.score for c in candidates], dtype=np.float64)
    rows = np.empty((len(candidates), len(EVIDENCE)), dtype=np.float64)
    for k, cand in enumerate(candidates):
        others = np.delete(scores, k)
        edits = min(OSA.distance(word, cand.word), 5)
        rows[k] = (
            max(cand.score, -40.0) / 10,
            np.clip(cand.score - others.max(), -20, 20) / 10 if len(others) else 2.0,
            edits,
            edits / max(len(word), 1),
            log_count.get(cand.word, 0.0) / 10,
            float(cand.open),
            len(word) / 10,
            english,
            float(cand.word[:1] == word[:1]),
        )
    return rows


def candidate_features(
    answer: WordAnswer, shape: str, sentence_start: bool, beside_names: tuple[bool, bool, bool]
) -> np.ndarray:
    """[candidates, FEATURES] for one unknown word as written in its sentence (`shape`: text.py's case_shape;
    `beside_names`: after_name, before_name, after_capitalised)."""
    evidence = answer.evidence
    rows = np.zeros((len(evidence), len(FEATURES)), dtype=np.float64)
    rows[:, : len(EVIDENCE)] = evidence
    rows[:, len(EVIDENCE) : -len(EVIDENCE)] = (
        shape == "title" and not sentence_start,
        shape == "title" and sentence_start,
        shape == "upper",
        *beside_names,
    )
    if shape != "lower":
        rows[:, -len(EVIDENCE) :] = evidence
    return rows


@dataclass(frozen=True)
class Calibration:
    """P(candidate is the intended word) = answer_map(sigmoid(intercept + coef · features)), and per context
    (CONTEXTS) the confidence below which an unknown word is left as written.

    The logistic regression is fitted on every candidate, most of them alternatives; its probability for the
    answers, which users see and the thresholds decide on, is off (too low in the middle). `answer_map`, fitted on
    the answers only (isotonic: how often an answer of each logistic probability is right), turns it into theirs.
    The alternatives keep the regression's probability, which the map was not fitted for; as only one candidate
    can be the word meant, they share at most what the answer leaves. Manifests without a map keep the
    regression's probability for every candidate."""

    coef: np.ndarray
    intercept: float
    thresholds: dict[str, float]
    answer_map: tuple[np.ndarray, np.ndarray] | None = None  # breakpoints (x, y) for np.interp

    @classmethod
    def from_manifest(cls, entry: dict[str, Any] | None) -> Calibration | None:
        """The manifest's `confidence` entry (training/speller_confidence.py), or None where it has none."""
        if not entry:
            return None
        if tuple(entry["features"]) != FEATURES:
            raise ValueError(
                f"the manifest's confidence model uses features {entry['features']}, this server {FEATURES}"
            )
        # Manifests fitted before the thresholds per context hold one for every word.
        thresholds = entry.get("thresholds") or dict.fromkeys(CONTEXTS, entry["threshold"])
        if set(thresholds) != set(CONTEXTS):
            raise ValueError(f"the manifest has confidence thresholds for {sorted(thresholds)}, this server {CONTEXTS}")
        coef = np.asarray(entry["coef"], dtype=np.float64)
        answer_map = entry.get("answer_map")
        return cls(
            coef,
            float(entry["intercept"]),
            {c: float(thresholds[c]) for c in CONTEXTS},
            breakpoints(answer_map) if answer_map is not None else None,
        )

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """[candidates] for one word's [candidates, FEATURES], its answer first."""
        probability = 1 / (1 + np.exp(-(features @ self.coef + self.intercept)))
        if self.answer_map is None or not len(probability):
            return probability
        answer = float(np.interp(probability[0], *self.answer_map))
        alternatives = probability[1:]
        room, taken = 1.0 - answer, float(alternatives.sum())
        if taken > room:
            alternatives = alternatives * (room / taken)
        return np.concatenate([[answer], alternatives])


def breakpoints(answer_map: dict[str, list[float]]) -> tuple[np.ndarray, np.ndarray]:
    """The manifest's `answer_map` {"x": [...], "y": [...]} as np.interp's arrays: x increasing, y never falling
    (a map that falls would reorder a word's candidates), both within 0..1."""
    x, y = (np.asarray(answer_map[k], dtype=np.float64) for k in ("x", "y"))
    if x.ndim != 1 or x.shape != y.shape or len(x) < 2:
        raise ValueError(f"the manifest's answer_map needs as many x as y, at least two: {answer_map}")
    if (np.diff(x) <= 0).any() or (np.diff(y) < 0).any() or min(x.min(), y.min()) < 0 or max(x.max(), y.max()) > 1:
        raise ValueError("the manifest's answer_map must have x increasing and y never falling, within 0..1")
    return x, y


def beam_confidence(features: np.ndarray) -> np.ndarray:
    """Without a fitted calibration (artifacts exported before it): the beam's own preference, a sigmoid of each
    candidate's margin over the others. Uncalibrated; such artifacts keep a threshold of 0 (every answer used)."""
    return 1 / (1 + np.exp(-10 * features[:, FEATURES.index("margin")]))
