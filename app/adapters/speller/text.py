"""Splitting text into the words the speller may touch, and giving corrections the original's case."""

from __future__ import annotations

import re
from dataclasses import dataclass

# A word-like chunk: letters, digits, underscores and inner apostrophes. Only chunks made of ASCII
# letters alone are candidates; "3rd", "snake_case", "don't" and "café" pass through untouched.
_CHUNK = re.compile(r"[\w]+(?:['’][\w]+)*")
_LETTERS = re.compile(r"[A-Za-z]+")


@dataclass(frozen=True)
class Token:
    start: int
    end: int
    text: str


def candidate_words(text: str, min_len: int = 2, max_len: int = 24) -> list[Token]:
    """The words of `text` the speller should look at, with their character offsets."""
    tokens = []
    for match in _CHUNK.finditer(text):
        word = match.group()
        if min_len <= len(word) <= max_len and _LETTERS.fullmatch(word) and case_shape(word) != "mixed":
            tokens.append(Token(match.start(), match.end(), word))
    return tokens


def case_shape(word: str) -> str:
    """lower, upper, title or mixed; mixed words (iPhone, McDonald) are names and are left alone."""
    if word.islower():
        return "lower"
    if word.isupper():
        return "upper"
    if word[0].isupper() and word[1:].islower():
        return "title"
    return "mixed"


def restore_case(original: str, corrected: str) -> str:
    shape = case_shape(original)
    if shape == "upper":
        return corrected.upper()
    if shape == "title":
        return corrected[:1].upper() + corrected[1:]
    return corrected
