"""DBpedia entity titles → (name, label): reading, normalising, the character vocabulary.

Pure Python (no torch) so that `bench/` reads exactly what training reads.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from training.speller_data import sha256_file

LABELS = ["Person", "Place", "Organisation", "Work", "Species"]
PAD, UNK = "<pad>", "<unk>"
SPLITS = ("train", "valid", "test")

Example = tuple[str, int]  # (normalised name, label index)

# A word of a name, for the lexicon: a run of letters (digits, `_` and punctuation end it).
WORD = re.compile(r"[^\W\d_]+")
LEXICON_CHANNELS = 2  # per character: its word's scaled log-frequency, and whether the lexicon has the word


def normalise(title: str) -> str:
    """A title as the model sees it: percent-decoded, `_` as spaces, NFC, trimmed.

    app/classifier.py has the same function (app and training share no module, only the manifest);
    tests/test_classifier.py checks the two agree.
    """
    return unicodedata.normalize("NFC", unquote(title).replace("_", " ")).strip()


def read_titles(path: Path) -> list[Example]:
    """`Title<TAB>Label<CR><LF>` lines → (title as written, label index); CRLF endings are one of its traps."""
    titles = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        title, _, label = line.rstrip("\r").partition("\t")
        if label in LABELS:
            titles.append((title, LABELS.index(label)))
    return titles


def read_split(path: Path) -> list[Example]:
    """(normalised name, label index); percent-encoding is the other trap. Names empty once normalised go."""
    return [(name, label) for title, label in read_titles(path) if (name := normalise(title))]


def build_vocab(names: list[str], min_count: int = 2) -> list[str]:
    """Characters seen at least `min_count` times in training, most frequent first, after the specials."""
    counts = Counter(ch for name in names for ch in name)
    kept = sorted((ch for ch, n in counts.items() if n >= min_count), key=lambda ch: (-counts[ch], ch))
    return [PAD, UNK, *kept]


@dataclass
class ClassifierData:
    train: list[Example]
    valid: list[Example]
    test: list[Example]
    vocab: list[str]
    sources: dict[str, dict[str, str]] = field(default_factory=dict)


def build(data_dir: Path, min_count: int = 2) -> ClassifierData:
    paths = {name: data_dir / f"smaller.{name}" for name in SPLITS}
    sources = {path.name: {"path": str(path), "sha256": sha256_file(path)} for path in paths.values()}
    splits = {name: read_split(path) for name, path in paths.items()}
    vocab = build_vocab([name for name, _ in splits["train"]], min_count)
    return ClassifierData(splits["train"], splits["valid"], splits["test"], vocab, sources)


def read_lexicon(path: Path) -> dict[str, int]:
    """`word<TAB>count` lines (the speller's dictionary.txt) → {lowercase word: count}."""
    counts: dict[str, int] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        word, _, count = line.partition("\t")
        counts[word] = int(count)
    return counts


def lexicon_values(counts: dict[str, int]) -> dict[str, float]:
    """Each word's log10(count + 1), scaled so the most frequent word is 1."""
    top = math.log10(max(counts.values()) + 1)
    return {word: math.log10(count + 1) / top for word, count in counts.items()}


def lexicon_spans(name: str, values: dict[str, float]) -> list[tuple[int, int, float]]:
    """(start, end, value) of each word of `name` the lexicon knows (lowercased). The classifier reads, at each
    character of such a word, the word's value and 1 (0 and 0 elsewhere): whether `Ten Desires` is made of
    common English words is what tells a title from a person's name, and a character reader cannot learn
    it from 18,000 names alone. app/classifier.py computes the same (tests/test_classifier.py holds them equal)."""
    spans = []
    for match in WORD.finditer(name):
        value = values.get(match.group().lower())
        if value is not None:
            spans.append((match.start(), match.end(), value))
    return spans
