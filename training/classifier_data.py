"""DBpedia entity titles → (name, label): reading, normalising, the character vocabulary.

Pure Python (no torch) so that `bench/` reads exactly what training reads.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from training import wordnet
from training.speller_data import sha256_file

LABELS = ["Person", "Place", "Organisation", "Work", "Species"]
PAD, UNK = "<pad>", "<unk>"
SPLITS = ("train", "valid", "test")

Example = tuple[str, int]  # (normalised name, label index)

# A word of a name, for the lexicon: a run of letters (digits, `_` and punctuation end it).
WORD = re.compile(r"[^\W\d_]+")


def normalise(title: str) -> str:
    """A title as the model sees it: percent-decoded, `_` as spaces, NFC, trimmed.

    app/adapters/classifier.py has the same function (app and training share no module, only the manifest);
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


@dataclass(frozen=True)
class Lexicon:
    """What a word source knows of words, as numbers: a vector per known word (lowercase). The classifier reads,
    at each character of a word the source knows, the word's vector and a 1 (zeros elsewhere): whether `Ten
    Desires` is made of common English words, or `Cross Bayou` ends in a kind of place, is what a character
    reader cannot learn from 18,000 names alone. A word the source lacks is tried again with each suffix rule in
    turn (WordNet's morphy: `farms` → farm). app/adapters/classifier.py reads the same table (tests hold them equal)."""

    values: dict[str, tuple[float, ...]]
    names: tuple[str, ...]  # what each number of a vector is
    suffix_rules: tuple[tuple[str, str], ...] = ()
    license: Path | None = None  # a licence that must travel with the table (WordNet's)

    @property
    def channels(self) -> int:
        return len(self.names) + 1

    def lookup(self, word: str) -> tuple[float, ...] | None:
        value = self.values.get(word)
        for suffix, replacement in self.suffix_rules:
            if value is not None:
                break
            if word.endswith(suffix) and len(word) > len(suffix) + 1:
                value = self.values.get(word[: -len(suffix)] + replacement)
        return value

    def table(self) -> str:
        """The artifact's form: two header lines, then `word<TAB>i:v i:v` with only the non-zero numbers, each
        written exactly (repr), so that serving reads the very values training did."""
        rules = " ".join(f"{suffix}:{replacement}" for suffix, replacement in self.suffix_rules)
        lines = ["#names\t" + " ".join(self.names), "#suffix_rules\t" + rules]
        for word in sorted(self.values):  # sorted: the same table, and digest, in every process (set order is not)
            lines.append(word + "\t" + " ".join(f"{i}:{v!r}" for i, v in enumerate(self.values[word]) if v))
        return "\n".join(lines) + "\n"

    def digest(self) -> str:
        return hashlib.sha256(self.table().encode("utf-8")).hexdigest()


def parse_table(text: str) -> Lexicon:
    lines = text.splitlines()
    names = tuple(lines[0].partition("\t")[2].split())
    rules = tuple(tuple(rule.split(":")) for rule in lines[1].partition("\t")[2].split())
    values = {}
    for line in lines[2:]:
        word, _, numbers = line.partition("\t")
        vector = [0.0] * len(names)
        for pair in numbers.split():
            i, v = pair.split(":")
            vector[int(i)] = float(v)
        values[word] = tuple(vector)
    return Lexicon(values, names, rules)  # type: ignore[arg-type]


def frequency_lexicon(counts: dict[str, int]) -> Lexicon:
    """A `word<TAB>count` list (the speller's dictionary.txt): each word's log10(count + 1), scaled so that the
    most frequent word is 1."""
    top = math.log10(max(counts.values()) + 1)
    return Lexicon({word: (math.log10(count + 1) / top,) for word, count in counts.items()}, ("log_frequency",))


def read_counts(path: Path) -> dict[str, int]:
    """`word<TAB>count` lines → {lowercase word: count}."""
    counts: dict[str, int] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        word, _, count = line.partition("\t")
        counts[word] = int(count)
    return counts


def read_lexicon(path: Path) -> Lexicon:
    """A WordNet `dict/` folder (training/wordnet.py: each word's supersenses), an artifact's `lexicon.tsv`
    table, or a `word<TAB>count` list (each word's frequency)."""
    path = Path(path)
    if path.is_dir():
        license = path.parent / "LICENSE"
        return Lexicon(wordnet.supersense_table(path), wordnet.CHANNELS, wordnet.SUFFIX_RULES,
                       license if license.exists() else None)  # fmt: skip
    if path.suffix == ".tsv":
        return parse_table(path.read_text(encoding="utf-8"))
    return frequency_lexicon(read_counts(path))


def lexicon_spans(name: str, lexicon: Lexicon) -> list[tuple[int, int, tuple[float, ...]]]:
    """(start, end, vector) of each word of `name` the lexicon knows (a word is a run of letters, lowercased)."""
    spans = []
    for match in WORD.finditer(name):
        value = lexicon.lookup(match.group().lower())
        if value is not None:
            spans.append((match.start(), match.end(), value))
    return spans
