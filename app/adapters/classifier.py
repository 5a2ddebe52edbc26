"""Classifier inference: names → normalised names → character ids → one graph call → class probabilities."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import onnxruntime as ort

from app.adapters.arrays import pad_rows
from app.metrics import Metrics
from app.runtime.artifacts import (
    ArtifactError,
    Manifest,
    ManifestModel,
    checksummed,
    load_manifest,
)
from app.runtime.sessions import choose_precision, open_session
from app.settings import Settings


def normalise(title: str) -> str:
    """As training/classifier_data.py: percent-decoded, `_` as spaces, NFC, trimmed (a test holds them equal)."""
    return unicodedata.normalize("NFC", unquote(title).replace("_", " ")).strip()


# Names a graph run, sorted by length: the graph runs every name to the longest one's length, so short runs of
# names of like length waste less than one long run (docs/classifier_wordnet.md).
CHUNK = 16

# As training/classifier_data.py: a word is a run of letters; digits, `_` and punctuation end it.
WORD = re.compile(r"[^\W\d_]+")


@dataclass(frozen=True)
class Lexicon:
    """An artifact's lexicon table (training/classifier_data.py's Lexicon.table): two header lines (the names of
    the numbers, the suffix rules), then `word<TAB>i:v i:v` with the non-zero numbers of each word's vector."""

    rows: dict[str, int]  # word → its row of `vectors`
    vectors: np.ndarray  # [words, channels] float32, the last column 1
    suffix_rules: tuple[tuple[str, str], ...]

    @property
    def channels(self) -> int:
        return self.vectors.shape[1]

    @classmethod
    def read(cls, path: Path) -> Lexicon:
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) < 2 or not lines[0].startswith("#names\t") or not lines[1].startswith("#suffix_rules\t"):
            raise ArtifactError(f"{path}: not a lexicon table (no #names and #suffix_rules header)")
        rules = tuple((a, b) for a, _, b in (rule.partition(":") for rule in lines[1].split("\t")[1].split()))
        vectors = np.zeros((len(lines) - 2, len(lines[0].split("\t")[1].split()) + 1), dtype=np.float32)
        vectors[:, -1] = 1.0
        rows = {}
        for row, line in enumerate(lines[2:]):
            word, _, numbers = line.partition("\t")
            rows[word] = row
            try:
                for pair in numbers.split():
                    i, _, v = pair.partition(":")
                    vectors[row, int(i)] = float(v)
            except (ValueError, IndexError) as error:
                raise ArtifactError(f"{path}, line {row + 3}: {line!r} is not word<TAB>i:v ... ({error})") from None
        return cls(rows, vectors, rules)

    def lookup(self, word: str) -> np.ndarray | None:
        """As training: the word itself, else the first suffix rule that turns it into a word the table has."""
        row = self.rows.get(word)
        for suffix, replacement in self.suffix_rules:
            if row is not None:
                break
            if word.endswith(suffix) and len(word) > len(suffix) + 1:
                row = self.rows.get(word[: -len(suffix)] + replacement)
        return None if row is None else self.vectors[row]


@dataclass(frozen=True)
class Classification:
    label: str
    scores: dict[str, float]


class Classifier(ManifestModel):
    def __init__(self, folder: Path, settings: Settings, metrics: Metrics | None = None) -> None:
        self.metrics = metrics
        self.manifest: Manifest = load_manifest(folder)
        # int8 about twice as fast a call on a CPU (docs/classifier_wordnet.md)
        self.precision, (graph,) = choose_precision(
            folder, self.manifest, ["classifier"], settings.classifier_precision, settings.providers
        )
        # The float graph may store its weights as int8 (training/export.py), folded to float32 at load.
        float_graph = self.precision == "float32"
        self.session: ort.InferenceSession = open_session(folder, graph, settings, fold_dequantize=float_graph)
        self.provider: str = self.session.get_providers()[0]
        extra = self.manifest.model_extra
        self.labels: list[str] = list(extra.get("labels") or [])
        if not self.labels:
            raise ArtifactError(f"{folder / 'manifest.json'}: no labels")
        self.max_len = self.manifest.limits["max_len"]
        self.keep_end = bool(extra.get("keep_end", False))
        self.pad_id = self.manifest.special_tokens["pad"]
        self.unk_id = self.manifest.special_tokens["unk"]
        # Sorted code points and their ids: a whole batch of characters maps to ids in one searchsorted.
        chars = [(ord(t), i) for i, t in enumerate(self.manifest.vocab) if len(t) == 1]
        chars.sort()
        self.code_points = np.array([c for c, _ in chars], dtype=np.uint32)
        self.code_ids = np.array([i for _, i in chars], dtype=np.int64)
        # Optional: the lexicon whose knowledge of each word the graph reads beside the characters.
        self.lexicon: Lexicon | None = None
        spec = extra.get("lexicon")
        if spec:
            path = checksummed(folder, self.manifest, spec["file"], "the lexicon")
            self.lexicon = Lexicon.read(path)
            if self.lexicon.channels != int(spec["channels"]):
                raise ArtifactError(f"{path}: {self.lexicon.channels} channels, the manifest says {spec['channels']}")
        wanted = {i.name for i in self.session.get_inputs()}
        if ("lexicon" in wanted) != (self.lexicon is not None):
            raise ArtifactError(f"{folder / 'manifest.json'}: the graph's lexicon input and the manifest disagree")

    def warm_up(self) -> None:
        self.classify(["Antonio_Veciana", "Kneuterdijk Palace"])

    def names(self, texts: list[str]) -> list[str]:
        """What the graph reads of each text; a text that normalises to nothing is one unknown character."""
        names = [normalise(t) for t in texts]
        return [(n[-self.max_len :] if self.keep_end else n[: self.max_len]) or "\0" for n in names]

    def ids(self, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Names → [B, T] ids padded at the end and lengths [B], without a loop over characters."""
        lengths = np.fromiter((len(n) for n in names), dtype=np.int64, count=len(names))
        points = np.frombuffer("".join(names).encode("utf-32-le"), dtype=np.uint32)
        slot = np.minimum(np.searchsorted(self.code_points, points), len(self.code_points) - 1)
        char_ids = np.where(self.code_points[slot] == points, self.code_ids[slot], self.unk_id)
        return pad_rows(char_ids, lengths, self.pad_id), lengths

    def lexicon_features(self, names: list[str], width: int) -> np.ndarray:
        """[B, width, channels]: at each character of a word the lexicon has, the word's vector (a slice per word:
        names have a few words, and the lookup is by whole word)."""
        assert self.lexicon is not None
        features = np.zeros((len(names), width, self.lexicon.channels), dtype=np.float32)
        for row, name in enumerate(names):
            for match in WORD.finditer(name):
                value = self.lexicon.lookup(match.group().lower())
                if value is not None:
                    features[row, match.start() : match.end()] = value
        return features

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """[B, classes]: the names sorted by length and run CHUNK at a time, so each graph run pads only to its
        own longest name (the LSTMs compute every padded position: one run over 64 names pads to the longest)."""
        names = self.names(texts)
        lengths = np.fromiter((len(n) for n in names), dtype=np.int64, count=len(names))
        order = np.argsort(lengths, kind="stable")
        probs = np.empty((len(names), len(self.labels)), dtype=np.float32)
        for start in range(0, len(names), CHUNK):
            rows = order[start : start + CHUNK]
            chunk = [names[i] for i in rows]
            ids, chunk_lengths = self.ids(chunk)
            feeds = {"ids": ids, "lengths": chunk_lengths}
            if self.lexicon is not None:
                feeds["lexicon"] = self.lexicon_features(chunk, ids.shape[1])
            (probs[rows],) = self.session.run(None, feeds)
        if self.metrics is not None:
            self.metrics.observe_batch("classifier", len(texts), int(lengths.sum()))
        return probs

    def batch(self, texts: list[str]) -> list[Classification]:
        """What the scheduler calls with the names of many requests."""
        return self.classify(texts)

    def classify(self, texts: list[str]) -> list[Classification]:
        if not texts:
            return []
        probs = self.probabilities(texts)
        best = probs.argmax(axis=1)
        rounded = probs.astype(np.float64).round(4).tolist()  # float32 would print 0.9189000129699707
        return [
            Classification(self.labels[b], dict(zip(self.labels, row, strict=True)))
            for b, row in zip(best, rounded, strict=True)
        ]
