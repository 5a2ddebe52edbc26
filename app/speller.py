"""Speller inference: words → ids → encoder → batched greedy decoder steps → words.

Every word of a call is decoded together: the loop runs over decoding steps, never over words,
and finished words leave the batch at once so later steps only pay for live ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from rapidfuzz.distance import OSA
from rapidfuzz.process import cpdist

from app.arrays import pad_rows
from app.artifacts import ArtifactError, Manifest, ManifestModel, load_manifest, open_session
from app.metrics import Metrics
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


class Speller(ManifestModel):
    def __init__(self, folder: Path, settings: Settings, metrics: Metrics | None = None) -> None:
        self.metrics = metrics
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
        counts = [(word, int(count)) for word, count in (line.split("\t") for line in dictionary_file.open())]
        self.words = frozenset(word for word, _ in counts)
        char_ids = {t: i for i, t in enumerate(vocab) if len(t) == 1}
        self.trie = DictionaryTrie(counts, char_ids, len(vocab), self.eos_id)
        self.max_batch_words = settings.speller_max_batch_words
        decoding = self.manifest.model_extra.get("decoding", {})

        def tuned(override: float | None, key: str, default: float | None) -> float | None:
            """A setting from the environment wins over the manifest's tuned value."""
            return override if override is not None else decoding.get(key, default)

        self.beam_size = int(tuned(settings.speller_beam_size, "beam_size", 1) or 1)
        self.prior_weight = float(tuned(settings.speller_prior_weight, "prior_weight", 0.0) or 0.0)
        self.edit_penalty = float(tuned(settings.speller_edit_penalty, "edit_penalty", 0.0) or 0.0)
        self.oov_penalty = tuned(settings.speller_oov_penalty, "oov_penalty", None)
        # What an unconstrained pass may write: letters and the end of a word, no other special token.
        self.letters_and_end = self.id_to_byte > 0
        self.letters_and_end[self.eos_id] = True

    def warm_up(self) -> None:
        self.correct_words(["speling", "korrect"])

    def correct_words(self, words: list[str]) -> list[str]:
        """Lowercase a-z words → their corrections, all decoded together.

        A beam search over dictionary words (the trie masks every other continuation); each finished
        hypothesis is scored log P(word | misspelling) + prior_weight · log P(word)
        − edit_penalty · edit distance(word, misspelling): without the last term, short frequent words
        that end early beat the longer right ones. With beam 1 and both weights 0 it is plain
        constrained greedy decoding. The loop runs over steps, never over words:
        every step is one decoder call and a few array operations for the whole batch.
        With an oov_penalty, an unconstrained greedy pass may answer a word outside the dictionary.
        """
        if not words:
            return []
        src, lengths = self._ids(words)
        memory, keys, h, c = self.encoder.run(None, {"src": src, "src_len": lengths})
        bias = np.where(np.arange(src.shape[1])[None, :] < lengths[:, None], 0, NEG_INF).astype(np.float32)
        encoded = (memory, keys, h, c, bias)
        best, found, decoded = self._dictionary_beam(words, *encoded)
        if self.oov_penalty is None:
            self._observe(len(words), decoded)
            return found
        # The model's own spelling, free of the dictionary, wins only if it beats the best dictionary
        # word by more than the penalty: for words no dictionary has (codespell's `spinlock`, say).
        score, spelled, greedy_decoded = self._open_greedy(*encoded)
        self._observe(len(words), decoded + greedy_decoded)
        score -= self.edit_penalty * cpdist(words, spelled, scorer=OSA.distance)
        score += self.prior_weight * self.trie.min_log_prior - self.oov_penalty
        # A copy of the misspelling is no answer: the model saying "looks fine" about a word no dictionary
        # has is how it fails on misspellings it cannot place, so the dictionary's best word stands.
        fresh = [bool(own) and own != word and own not in self.words for own, word in zip(spelled, words, strict=True)]
        wins = (score > best) & np.array(fresh)
        return [own if win else known for own, win, known in zip(spelled, wins, found, strict=True)]

    def _observe(self, words: int, decoded: int) -> None:
        if self.metrics is not None:
            self.metrics.observe_batch("speller", words, decoded)

    def _dictionary_beam(
        self, words: list[str], memory: np.ndarray, keys: np.ndarray, h: np.ndarray, c: np.ndarray, bias: np.ndarray
    ) -> tuple[np.ndarray, list[str], int]:
        """The best dictionary word for each misspelling, its score, and how many rows × steps were decoded."""
        beam, weight, vocab = self.beam_size, self.prior_weight, len(self.id_to_byte)
        edit_weight = self.edit_penalty
        batch = len(words)

        row_words = np.repeat(np.arange(batch), beam)  # each word gets `beam` rows; the word each row decodes
        memory, keys, bias = memory[row_words], keys[row_words], bias[row_words]
        h, c = h[:, row_words], c[:, row_words]
        score = np.full((batch, beam), -np.inf, dtype=np.float32)
        score[:, 0] = 0  # one live hypothesis per word to start with
        token = np.full(batch * beam, self.sos_id, dtype=np.int64)
        nodes = np.full(batch * beam, ROOT, dtype=np.int32)
        history = np.zeros((batch * beam, self.max_steps), dtype=np.int64)
        best = np.full(batch, -np.inf, dtype=np.float32)
        best_ids = np.full((batch, self.max_steps), self.eos_id, dtype=np.int64)
        live = np.arange(batch)  # words still searching, in the order of the rows
        decoded = 0
        # No finished word can score above its best live hypothesis plus the largest prior.
        prior_bound = weight * self.trie.max_log_prior

        for step in range(self.max_steps):
            logits, h, c = self.decoder.run(
                None, {"token": token, "h": h, "c": c, "memory": memory, "keys": keys, "bias": bias}
            )
            decoded += len(token)
            logp = np.where(self.trie.allowed[nodes], _log_softmax(logits), -np.inf)
            total = (score.reshape(-1, 1) + logp).reshape(len(live), beam * vocab)
            top = np.argpartition(-total, beam - 1, axis=1)[:, :beam]
            top_score = np.take_along_axis(total, top, axis=1)
            parent = (np.arange(len(live))[:, None] * beam + top // vocab).ravel()
            token = (top % vocab).ravel()
            history, nodes, h, c = history[parent], nodes[parent], h[:, parent], c[:, parent]
            history[:, step] = token
            ended = (token == self.eos_id) & np.isfinite(top_score.ravel())
            # A hypothesis that ends here is a whole dictionary word: rerank it with that word's prior.
            final = np.where(ended, top_score.ravel() + weight * self.trie.log_prior[nodes], -np.inf)
            if edit_weight and ended.any():
                done = np.flatnonzero(ended)
                spelled = self.id_to_byte[history[done, :step]]
                candidates = [row.tobytes().decode("ascii") for row in spelled]
                distance = cpdist([words[i] for i in row_words[done]], candidates, scorer=OSA.distance)
                final[done] -= edit_weight * distance
            final = final.reshape(len(live), beam)
            pick = final.argmax(axis=1)
            better = final[np.arange(len(live)), pick] > best[live]
            best[live[better]] = final[better, pick[better]]
            best_ids[live[better]] = history.reshape(len(live), beam, -1)[better, pick[better]]

            score = np.where(ended.reshape(len(live), beam), -np.inf, top_score)
            score[best[live] >= score.max(axis=1) + prior_bound] = -np.inf
            going = np.isfinite(score).reshape(-1)
            nodes = np.where(going, self.trie.step(nodes, token), ROOT)
            searching = np.isfinite(score).any(axis=1)
            if not searching.all():  # drop finished words: later steps pay only for live ones
                keep = np.repeat(searching, beam)
                live, score = live[searching], score[searching]
                token, nodes, history, row_words = token[keep], nodes[keep], history[keep], row_words[keep]
                h, c, memory, keys, bias = h[:, keep], c[:, keep], memory[keep], keys[keep], bias[keep]
            if live.size == 0:
                break
        return best, self._spell(best_ids), decoded

    def _open_greedy(
        self, memory: np.ndarray, keys: np.ndarray, h: np.ndarray, c: np.ndarray, bias: np.ndarray
    ) -> tuple[np.ndarray, list[str], int]:
        """Unconstrained greedy decoding (letters and end only): each word's log-probability and spelling, and the
        rows × steps decoded."""
        batch = memory.shape[0]
        out = np.full((batch, self.max_steps), self.eos_id, dtype=np.int64)
        total = np.zeros(batch, dtype=np.float32)
        live = np.arange(batch)
        token = np.full(batch, self.sos_id, dtype=np.int64)
        decoded = 0
        for step in range(self.max_steps):
            logits, h, c = self.decoder.run(
                None, {"token": token, "h": h, "c": c, "memory": memory, "keys": keys, "bias": bias}
            )
            decoded += len(token)
            logp = np.where(self.letters_and_end, _log_softmax(logits), -np.inf)
            token = logp.argmax(axis=1)
            total[live] += logp[np.arange(len(live)), token]
            out[live, step] = token
            keep = token != self.eos_id
            if not keep.all():
                live, token, h, c = live[keep], token[keep], h[:, keep], c[:, keep]
                memory, keys, bias = memory[keep], keys[keep], bias[keep]
            if live.size == 0:
                break
        return total, self._spell(out), decoded

    def _spell(self, ids: np.ndarray) -> list[str]:
        """[B, S] ids ending in eos → words, converted as one array."""
        ends = (ids == self.eos_id).argmax(axis=1)
        chars = self.id_to_byte[ids]
        return [chars[i, : ends[i]].tobytes().decode("ascii") for i in range(len(ids))]

    def _ids(self, words: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Words → [B, T] ids padded at the end and their lengths, without a loop over characters."""
        lengths = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
        codes = np.frombuffer("".join(words).encode("ascii"), dtype=np.uint8)
        return pad_rows(self.byte_to_id[codes], lengths, self.pad_id), lengths

    def batch(self, texts: list[str]) -> list[CorrectedText]:
        """What the scheduler calls with the texts of many requests."""
        return self.correct_texts(texts)

    def correct_texts(self, texts: list[str]) -> list[CorrectedText]:
        """Correct every unknown word of every text, all in one batch."""
        tokens = [candidate_words(text, max_len=self.max_len) for text in texts]
        unknown = sorted({t.text.lower() for ts in tokens for t in ts} - self.words)
        # Bounded chunks: a full request can hold tens of thousands of distinct words, and one batch of
        # them times the beam would need gigabytes of attention memory.
        fixed: dict[str, str] = {}
        for start in range(0, len(unknown), self.max_batch_words):
            chunk = unknown[start : start + self.max_batch_words]
            fixed.update(zip(chunk, self.correct_words(chunk), strict=True))
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


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _apply(text: str, corrections: list[Correction]) -> str:
    parts, last = [], 0
    for fix in corrections:
        parts += [text[last : fix.start], fix.suggestion]
        last = fix.end
    return "".join(parts) + text[last:]
