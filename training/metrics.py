"""Scores as the lab computed them: exact match and character BLEU-4 (NLTK, smoothing method1)."""

from __future__ import annotations

from collections.abc import Sequence

from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

_SMOOTH = SmoothingFunction().method1


def char_bleu4(prediction: str, target: str) -> float:
    weights = (0.25, 0.25, 0.25, 0.25) if len(target) > 3 else (0.3333, 0.3333, 0.3333)
    return float(sentence_bleu([list(target)], list(prediction), weights=weights, smoothing_function=_SMOOTH))


def exact_match(predictions: Sequence[str], targets: Sequence[str]) -> float:
    return sum(p == t for p, t in zip(predictions, targets, strict=True)) / max(len(targets), 1)


def mean_bleu(predictions: Sequence[str], targets: Sequence[str]) -> float:
    return sum(char_bleu4(p, t) for p, t in zip(predictions, targets, strict=True)) / max(len(targets), 1)
