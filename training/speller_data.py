"""Spelling data: sources, the held-out split, synthetic typos, the character vocabulary.

Pure Python (no torch) so that `bench/` can rebuild exactly the same split.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

PAD, SOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS = [PAD, SOS, EOS, UNK]
ALPHABET = "abcdefghijklmnopqrstuvwxyz"
WORD_RE = re.compile(r"[a-z]+")

Pair = tuple[str, str]  # (misspelling, correct word)


def sha256_file(path: Path) -> str:
    # app/runtime/artifacts.py has its twin on purpose: training and app share no module, only the manifest.
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def word_bucket(word: str, buckets: int = 20) -> int:
    """A stable bucket for a target word: the split never changes between runs or machines."""
    return int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "big") % buckets


def split_of(target: str) -> str:
    """5% of target words are held out for the final score, 5% validate early stopping."""
    bucket = word_bucket(target)
    return "heldout" if bucket == 0 else "valid" if bucket == 1 else "train"


def load_lab_pairs(path: Path) -> list[Pair]:
    """The lab's JSON format: [{"input": [misspellings...], "target": word}]."""
    records = json.loads(Path(path).read_text())
    return [(wrong, r["target"]) for r in records for wrong in r["input"]]


def codespell_dictionary_path() -> Path:
    import codespell_lib  # installed from PyPI; only its data file is used

    return Path(codespell_lib.__file__).parent / "data" / "dictionary.txt"


def load_codespell_pairs(path: Path) -> list[Pair]:
    """`wrong->right` lines; entries with several suggestions or non a-z characters are ambiguous: skip them."""
    pairs = []
    for line in Path(path).read_text().splitlines():
        wrong, _, rights = line.partition("->")
        candidates = [c.strip() for c in rights.split(",") if c.strip()]
        if len(candidates) == 1 and WORD_RE.fullmatch(wrong) and WORD_RE.fullmatch(candidates[0]):
            pairs.append((wrong, candidates[0]))
    return pairs


def symspell_frequency_path() -> Path:
    import symspellpy

    return Path(symspellpy.__file__).parent / "frequency_dictionary_en_82_765.txt"


def pyspellchecker_frequency_path() -> Path:
    import spellchecker

    return Path(spellchecker.__file__).parent / "resources" / "en.json.gz"


def load_pyspellchecker_words(path: Path) -> dict[str, int]:
    """pyspellchecker's English word counts (gzipped JSON), a-z words only."""
    import gzip

    with gzip.open(path, "rt") as f:
        return {w: int(c) for w, c in json.load(f).items() if WORD_RE.fullmatch(w)}


def load_frequency_words(path: Path) -> list[tuple[str, int]]:
    """SymSpell's English frequency list, most frequent first, a-z words only."""
    words = []
    for line in Path(path).read_text().splitlines():
        word, count = line.split()
        if WORD_RE.fullmatch(word):
            words.append((word, int(count)))
    words.sort(key=lambda wc: -wc[1])
    return words


# Neighbouring keys on a QWERTY keyboard: the commonest source of substitution typos.
_KEYBOARD = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]
_NEIGHBOURS: dict[str, str] = {}
for _r, _row in enumerate(_KEYBOARD):
    for _c, _ch in enumerate(_row):
        near = [_row[i] for i in (_c - 1, _c + 1) if 0 <= i < len(_row)]
        for _dr in (-1, 1):
            if 0 <= _r + _dr < len(_KEYBOARD):
                other = _KEYBOARD[_r + _dr]
                near += [other[i] for i in (_c - 1, _c, _c + 1) if 0 <= i < len(other)]
        _NEIGHBOURS[_ch] = "".join(near)
_VOWELS = "aeiou"


def make_typo(word: str, rng: random.Random, edits: int = 1) -> str:
    """One or more human-like edits: drop, double, swap, keyboard slip or vowel confusion."""
    for _ in range(edits):
        if len(word) < 2:
            break
        i = rng.randrange(len(word))
        kind = rng.choice(["delete", "double", "transpose", "keyboard", "vowel", "insert"])
        ch = word[i]
        if kind == "delete":
            word = word[:i] + word[i + 1 :]
        elif kind == "double":
            word = word[:i] + ch + word[i:]
        elif kind == "transpose" and i < len(word) - 1:
            word = word[:i] + word[i + 1] + ch + word[i + 2 :]
        elif kind == "keyboard":
            word = word[:i] + rng.choice(_NEIGHBOURS[ch]) + word[i + 1 :]
        elif kind == "vowel" and ch in _VOWELS:
            word = word[:i] + rng.choice(_VOWELS.replace(ch, "")) + word[i + 1 :]
        elif kind == "insert":
            word = word[:i] + rng.choice(ALPHABET) + word[i:]
    return word


def synthetic_pairs(words: Iterable[str], per_word: int, seed: int) -> Iterator[Pair]:
    rng = random.Random(seed)
    for word in words:
        for _ in range(per_word):
            typo = make_typo(word, rng, edits=1 if rng.random() < 0.7 else 2)
            if typo != word:
                yield typo, word


@dataclass
class SpellingData:
    train: list[Pair]
    valid: list[Pair]
    heldout: list[Pair]
    lab_test: list[Pair]
    dictionary: dict[str, int]  # word → count, the prior for reranking
    sources: dict[str, dict[str, str]] = field(default_factory=dict)


def build(
    lab_dir: Path,
    codespell_path: Path | None = None,
    frequency_path: Path | None = None,
    extra_words_path: Path | None = None,
    synthetic_words: int = 30000,
    synthetic_per_word: int = 2,
    max_len: int = 24,
    seed: int = 0,
) -> SpellingData:
    """Every source, split by target word; no evaluation pair or held-out target reaches training."""
    codespell_path = codespell_path or codespell_dictionary_path()
    frequency_path = frequency_path or symspell_frequency_path()
    extra_words_path = extra_words_path or pyspellchecker_frequency_path()
    lab_train = load_lab_pairs(lab_dir / "train.json")
    lab_test = load_lab_pairs(lab_dir / "test.json")
    codespell = load_codespell_pairs(codespell_path)
    frequency = load_frequency_words(frequency_path)

    by_split: dict[str, list[Pair]] = {"train": [], "valid": [], "heldout": []}
    for wrong, right in codespell:
        by_split[split_of(right)].append((wrong, right))
    eval_pairs = set(lab_test) | set(by_split["valid"]) | set(by_split["heldout"])
    eval_targets = {right for _, right in by_split["valid"] + by_split["heldout"]}

    def usable(pair: Pair) -> bool:
        wrong, right = pair
        return (
            pair not in eval_pairs
            and right not in eval_targets
            and wrong != right
            and 0 < len(wrong) <= max_len
            and 0 < len(right) <= max_len
        )

    top_words = [w for w, _ in frequency if len(w) >= 3 and w not in eval_targets][:synthetic_words]
    train = [p for p in lab_train + by_split["train"] if usable(p)]
    train += [p for p in synthetic_pairs(top_words, synthetic_per_word, seed) if usable(p)]
    train = sorted(set(train))
    random.Random(seed).shuffle(train)

    # What decoding may produce: general English word lists plus the training targets, never
    # evaluation-only words. Counts are SymSpell's (Google Books); words only the other lists have
    # get its smallest count, so they rank below every word it knows.
    floor = min(count for _, count in frequency)
    dictionary = {w: floor for w in load_pyspellchecker_words(extra_words_path) if len(w) <= max_len}
    dictionary |= {right: floor for _, right in train}
    dictionary |= {w: count for w, count in frequency if len(w) <= max_len}
    sources = {
        "lab_train": {"path": str(lab_dir / "train.json"), "sha256": sha256_file(lab_dir / "train.json")},
        "lab_test": {"path": str(lab_dir / "test.json"), "sha256": sha256_file(lab_dir / "test.json")},
        "codespell": {
            "path": "codespell_lib/data/dictionary.txt",
            "version": _version("codespell"),
            "sha256": sha256_file(codespell_path),
        },
        "pyspellchecker_words": {
            "path": "spellchecker/resources/en.json.gz",
            "version": _version("pyspellchecker"),
            "sha256": sha256_file(extra_words_path),
        },
        "symspell_frequency": {
            "path": "symspellpy/frequency_dictionary_en_82_765.txt",
            "version": _version("symspellpy"),
            "sha256": sha256_file(frequency_path),
        },
    }
    return SpellingData(
        train=train,
        valid=sorted(by_split["valid"]),
        heldout=sorted(by_split["heldout"]),
        lab_test=lab_test,
        dictionary=dict(sorted(dictionary.items())),
        sources=sources,
    )


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
