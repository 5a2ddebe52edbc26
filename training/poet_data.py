"""The Tang poems of npm `chinese-poetry@2.0.1` → clean, simplified, deduplicated, split, encoded.

`fetch()` runs `npm pack` once into a cache outside the repository and checks the tarball's sha256;
`read_folder()` reads a local folder of the same `poet.tang.*.json` files (with or without `error/`).
Pure Python and numpy (no torch) so that `bench/` reads exactly what training reads.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from training import npm

PACKAGE = "chinese-poetry@2.0.1"
TARBALL = "chinese-poetry-2.0.1.tgz"
TARBALL_SHA256 = "25b549e46919c3a0569db6b68ddc96956b04a484ea4518ad2bbd4f137e307e86"
TANG_DIR = "package/dist/quantangshi"
DEFAULT_CACHE = npm.DEFAULT_CACHE

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = [PAD, UNK, BOS, EOS]
PUNCTUATION = "，。？！；：、"  # the marks a poem may keep; line ends are "，" and "。"
# Quotation and title marks are typography around characters that belong to the poem: drop the marks.
TYPOGRAPHY = str.maketrans("", "", "「」『』《》〈〉")
HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
SPLITS = ("train", "valid", "test")


@dataclass
class Poem:
    id: str
    title: str
    author: str
    text: str  # lines joined, punctuation kept: "床前明月光，疑是地上霜。..."


def fetch(cache: Path = DEFAULT_CACHE) -> Path:
    """The package's Tang folder, downloaded with `npm pack` and unpacked into `cache` the first time."""
    root = npm.fetch(PACKAGE, TARBALL_SHA256, lambda name: name.startswith(f"{TANG_DIR}/") and ".tang." in name, cache)
    return root / TANG_DIR


def read_folder(folder: Path) -> tuple[list[dict], set[str]]:
    """Every poem record of `poet.tang.*.json`, and the ids the package's `error/` files list as suspect."""
    records = [r for path in sorted(folder.glob("poet.tang.*.json")) for r in json.loads(path.read_text("utf-8"))]
    if not records:
        raise FileNotFoundError(f"no poet.tang.*.json in {folder}")
    suspect = {r["id"] for path in sorted(folder.glob("error/poet.tang.*.json")) for r in json.loads(path.read_text())}
    return records, suspect


def clean_text(paragraphs: list[str]) -> str | None:
    """The poem's text, or None when it carries anything but Han characters and punctuation.

    That drops the package's □ (lost characters), ○, editorial notes in （） [] 〖〗 {} and stray digits.
    """
    text = "".join(paragraphs).translate(TYPOGRAPHY).replace(" ", "")
    if not text or any(not HAN.match(ch) and ch not in PUNCTUATION for ch in text):
        return None
    return text


def split_of(poem_id: str) -> str:
    """train 90%, valid 5%, test 5%, by a hash of the id: stable across runs, machines and package order."""
    bucket = int(hashlib.sha1(poem_id.encode()).hexdigest(), 16) % 100
    return "test" if bucket < 5 else "valid" if bucket < 10 else "train"


def converter(script: str):
    """A text → text function: OpenCC's traditional → simplified, one character for one, or the identity."""
    if script == "traditional":
        return lambda text: text
    import opencc  # only training needs it

    return opencc.OpenCC("t2s").convert


def build_vocab(texts: list[str], min_count: int) -> list[str]:
    """Specials, then characters seen at least `min_count` times in training, most frequent first."""
    counts = Counter(ch for text in texts for ch in text)
    kept = sorted((ch for ch, n in counts.items() if n >= min_count), key=lambda ch: (-counts[ch], ch))
    return [*SPECIALS, *kept]


@dataclass
class PoetData:
    train: list[Poem]
    valid: list[Poem]
    test: list[Poem]
    vocab: list[str]
    stats: dict = field(default_factory=dict)

    def split(self, name: str) -> list[Poem]:
        return getattr(self, name)


def build(folder: Path, script: str = "simplified", min_count: int = 5) -> PoetData:
    records, suspect = read_folder(folder)
    convert = converter(script)
    splits: dict[str, list[Poem]] = {name: [] for name in SPLITS}
    seen: set[str] = set()
    dropped = Counter()
    for record in sorted(records, key=lambda r: r["id"]):  # sorted: which twin of a duplicate stays is stable
        if record["id"] in suspect:
            dropped["listed in error/"] += 1
            continue
        text = clean_text(record.get("paragraphs") or [])
        if text is None:
            dropped["annotations, lost or non-Han characters"] += 1
            continue
        text = convert(text)
        if text in seen:  # the same poem under two titles or authors would leak across splits
            dropped["duplicate text"] += 1
            continue
        seen.add(text)
        poem = Poem(record["id"], convert(record.get("title", "")), convert(record.get("author", "")), text)
        splits[split_of(poem.id)].append(poem)
    vocab = build_vocab([p.text for p in splits["train"]], min_count)
    known = set(vocab)
    train_chars = sum(len(p.text) for p in splits["train"])
    stats = {
        "source": {"package": PACKAGE, "tarball_sha256": TARBALL_SHA256, "folder": str(folder)},
        "records": len(records),
        "dropped": dict(dropped),
        "poems": {name: len(poems) for name, poems in splits.items()},
        "characters": {name: sum(len(p.text) for p in poems) for name, poems in splits.items()},
        "vocab_size": len(vocab),
        "min_count": min_count,
        "script": script,
        "train_unk_rate": sum(ch not in known for p in splits["train"] for ch in p.text) / max(train_chars, 1),
    }
    return PoetData(splits["train"], splits["valid"], splits["test"], vocab, stats)


def encode(text: str, char_id: dict[str, int]) -> list[int]:
    """<bos> text <eos> as ids; unknown characters as <unk>."""
    unk = char_id[UNK]
    return [char_id[BOS], *(char_id.get(ch, unk) for ch in text), char_id[EOS]]


def windows(length: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """How a model that reads at most `context` positions reads a sequence of `length` inputs: (start, end,
    scored_from) for each window of inputs [start, end), whose predictions count from input `scored_from` on.

    The first window counts all it predicts; each next one starts `stride` later, so its first `context - stride`
    inputs are context already counted and only the rest is new. stride = context: disjoint windows (training);
    a smaller stride gives every prediction past the first window at least `context - stride` characters of
    context (evaluation, training/poet_transformer.py and the served graph's in bench/poet_quality.py alike).
    """
    spans, start, scored = [], 0, 0
    while True:
        end = min(start + context, length)
        spans.append((start, end, scored))
        if end == length:
            return spans
        start, scored = start + stride, end
