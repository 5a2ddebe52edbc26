"""Speller inference: words → ids → encoder → batched greedy decoder steps → words.

Every word of a call is decoded together: the loop runs over decoding steps, never over words,
and finished words leave the batch at once so later steps only pay for live ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from app.artifacts import ArtifactError, Manifest, load_manifest, open_session
from app.settings import Settings
from app.text import candidate_words, restore_case
from app.trie import ROOT, DictionaryTrie

NEG_INF = np.float32(-1e9)


@dataclass(frozen=True)
class Correction:
    start: int
    end: int
    original: str
    suggestion: str


@dataclass(frozen=True)
class CorrectedText:
    text: str
    corrections: list[Correction]


class Speller:
    def __init__(self, folder: Path, settings: Settings) -> None:
        self.manifest: Manifest = load_manifest(folder)
        self.encoder: ort.InferenceSession = open_session(folder, self.manifest.graphs["encoder"], settings)
        self.decoder: ort.InferenceSession = open_session(folder, self.manifest.graphs["decoder_step"], settings)
        self.provider: str = self.encoder.get_providers()[0]
        vocab = self.manifest.vocab
        special = self.manifest.special_tokens
        self.pad_id, self.sos_id, self.eos_id, unk_id = (special[k] for k in ("pad", "sos", "eos", "unk"))
        self.max_len = self.manifest.limits["max_word_len"]
        self.max_steps = self.manifest.limits["max_decode_steps"]
        # Byte → id and id → byte tables turn whole arrays of characters into ids and back at once.
        self.byte_to_id = np.full(256, unk_id, dtype=np.int64)
        self.id_to_byte = np.zeros(len(vocab), dtype=np.uint8)
        for i, token in enumerate(vocab):
            if len(token) == 1:
                self.byte_to_id[ord(token)] = i
                self.id_to_byte[i] = ord(token)
        dictionary_file = folder / self.manifest.model_extra.get("dictionary", "dictionary.txt")
        if dictionary_file.name not in self.manifest.files:
            raise ArtifactError(f"{dictionary_file}: dictionary has no checksum in {folder / 'manifest.json'}")
        self.words = frozenset(dictionary_file.read_text().split())
        char_ids = {t: i for i, t in enumerate(vocab) if len(t) == 1}
        self.trie = DictionaryTrie(sorted(self.words), char_ids, len(vocab), self.eos_id)

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    def warm_up(self) -> None:
        self.correct_words(["speling", "korrect"])

    def correct_words(self, words: list[str]) -> list[str]:
        """Lowercase a-z words → their corrections, all decoded in one batched greedy loop."""
        if not words:
            return []
        lengths = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
        batch, width = len(words), int(lengths.max())
        codes = np.frombuffer("".join(words).encode("ascii"), dtype=np.uint8)
        rows = np.repeat(np.arange(batch), lengths)
        cols = np.arange(len(codes)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        src = np.full((batch, width), self.pad_id, dtype=np.int64)
        src[rows, cols] = self.byte_to_id[codes]
        memory, keys, h, c = self.encoder.run(None, {"src": src, "src_len": lengths})
        bias = np.where(np.arange(width)[None, :] < lengths[:, None], np.float32(0), NEG_INF).astype(np.float32)

        out = np.full((batch, self.max_steps), self.eos_id, dtype=np.int64)
        live = np.arange(batch)  # rows of the original batch still decoding
        token = np.full(batch, self.sos_id, dtype=np.int64)
        nodes = np.full(batch, ROOT, dtype=np.int32)
        for step in range(self.max_steps):
            logits, h, c = self.decoder.run(
                None, {"token": token, "h": h, "c": c, "memory": memory, "keys": keys, "bias": bias}
            )
            token = np.where(self.trie.allowed[nodes], logits, NEG_INF).argmax(axis=1)
            out[live, step] = token
            nodes = self.trie.step(nodes, token)
            keep = token != self.eos_id
            if not keep.all():
                live, token, nodes = live[keep], token[keep], nodes[keep]
                h, c = h[:, keep], c[:, keep]
                memory, keys, bias = memory[keep], keys[keep], bias[keep]
            if live.size == 0:
                break
        ends = (out == self.eos_id).argmax(axis=1)
        chars = self.id_to_byte[out]
        return [chars[i, : ends[i]].tobytes().decode("ascii") for i in range(batch)]

    def correct_texts(self, texts: list[str]) -> list[CorrectedText]:
        """Correct every unknown word of every text, all in one batch."""
        tokens = [candidate_words(text, max_len=self.max_len) for text in texts]
        unknown = sorted({t.text.lower() for ts in tokens for t in ts} - self.words)
        fixed = dict(zip(unknown, self.correct_words(unknown), strict=True))
        results = []
        for text, found in zip(texts, tokens, strict=True):
            corrections = []
            for token in found:
                suggestion = fixed.get(token.text.lower())
                if suggestion and suggestion != token.text.lower():
                    corrections.append(
                        Correction(token.start, token.end, token.text, restore_case(token.text, suggestion))
                    )
            results.append(CorrectedText(_apply(text, corrections), corrections))
        return results


def _apply(text: str, corrections: list[Correction]) -> str:
    parts, last = [], 0
    for fix in corrections:
        parts += [text[last : fix.start], fix.suggestion]
        last = fix.end
    return "".join(parts) + text[last:]
