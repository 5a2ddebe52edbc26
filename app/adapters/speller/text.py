"""Splitting text into the words the speller may touch, and giving corrections the original's case."""

from __future__ import annotations

import re
from dataclasses import dataclass

# A word-like chunk: letters, digits, underscores and inner apostrophes. Only chunks made of ASCII
# letters alone are candidates; "3rd", "snake_case", "don't" and "café" pass through untouched.
_CHUNK = re.compile(r"[\w]+(?:['’][\w]+)*")
_LETTERS = re.compile(r"[A-Za-z]+")


# Where a sentence ends: what lies between two words decides whether the second starts a sentence.
_SENTENCE_END = re.compile(r"[.!?\n]")
_SPACES = re.compile(r"[ \t]+")

# Contractions written without their apostrophe, where the bare spelling is no other common word: "ill",
# "well", "were", "shell", "hell", "wed", "shed", "its", "lets", "id" and "hes" are words, so they stay.
CONTRACTIONS = {
    "dont": "don't", "cant": "can't", "wont": "won't", "im": "I'm", "ive": "I've", "didnt": "didn't",
    "doesnt": "doesn't", "isnt": "isn't", "thats": "that's", "theyre": "they're", "youre": "you're",
    "wouldnt": "wouldn't", "couldnt": "couldn't", "shouldnt": "shouldn't", "wasnt": "wasn't", "arent": "aren't",
    "havent": "haven't", "hasnt": "hasn't", "hadnt": "hadn't", "werent": "weren't", "mustnt": "mustn't",
    "neednt": "needn't", "aint": "ain't", "theyve": "they've", "weve": "we've", "youve": "you've",
    "youll": "you'll", "theyll": "they'll", "youd": "you'd", "theyd": "they'd", "shes": "she's",
    "whats": "what's", "wheres": "where's", "whos": "who's", "theres": "there's", "heres": "here's",
    "itll": "it'll", "thatll": "that'll", "wouldve": "would've", "couldve": "could've", "shouldve": "should've",
}  # fmt: skip


@dataclass(frozen=True)
class Token:
    start: int
    end: int
    text: str
    sentence_start: bool = False  # the first word of the text, or the first after a . ! ? or line break
    # The words just before and after it when only spaces part them, within its sentence: "Acacia" in "Acacia
    # dealbata", "Novara" in "da Novara" (a lowercase word beside a capitalised unknown one is most often part of a
    # name); `follows_start`: the word before starts the sentence.
    follows: str = ""
    follows_start: bool = False
    precedes: str = ""


def candidate_words(text: str, min_len: int = 2, max_len: int = 24) -> list[Token]:
    """The words of `text` the speller should look at, with their character offsets."""
    chunks = list(_CHUNK.finditer(text))
    tokens = []
    for i, match in enumerate(chunks):
        word = match.group()
        before = chunks[i - 1] if i else None
        after = chunks[i + 1] if i + 1 < len(chunks) else None
        starts = before is None or bool(_SENTENCE_END.search(text, before.end(), match.start()))
        if min_len <= len(word) <= max_len and _LETTERS.fullmatch(word) and case_shape(word) != "mixed":
            follows_at = before.start() if before else 0
            follows = before.group() if before and _SPACES.fullmatch(text, before.end(), match.start()) else ""
            follows_start = bool(follows) and (
                i == 1 or bool(_SENTENCE_END.search(text, chunks[i - 2].end(), follows_at))
            )
            precedes = after.group() if after and _SPACES.fullmatch(text, match.end(), after.start()) else ""
            tokens.append(Token(match.start(), match.end(), word, starts, follows, follows_start, precedes))
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
    """`corrected` written as `original` is (a lowercase original keeps the correction's own capitals: "I'm")."""
    shape = case_shape(original)
    if shape == "upper":
        return corrected.upper()
    if shape == "title":
        return corrected[:1].upper() + corrected[1:]
    return corrected
