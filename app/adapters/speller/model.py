"""Speller inference: words → ids → encoder → batched greedy decoder steps → words.

Every word of a call is decoded together: the loop runs over decoding steps, never over words,
and finished words leave the batch at once so later steps only pay for live ones.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
from rapidfuzz.distance import OSA
from rapidfuzz.process import cpdist

from app.adapters.arrays import pad_rows
from app.adapters.speller import beam_step as compiled
from app.adapters.speller.decision import Alternative, CorrectedText, Policy, Proposal, Reviewed
from app.adapters.speller.evidence import (
    Calibration,
    Candidate,
    EnglishLikeness,
    WordAnswer,
    answer_evidence,
    beam_confidence,
    candidate_features,
    context,
)
from app.adapters.speller.rows import NEG_INF, DecoderRows, SpellRows
from app.adapters.speller.text import CONTRACTIONS, Token, candidate_words, case_shape, restore_case
from app.adapters.speller.trie import ROOT, DictionaryTrie
from app.engine.protocol import decode_all
from app.metrics import Metrics
from app.runtime.artifacts import (
    ArtifactError,
    Manifest,
    ManifestModel,
    load_manifest,
    read_word_counts,
)
from app.runtime.sessions import choose_precision, open_session
from app.settings import Settings

ALTERNATIVES = 3  # other finished words offered beside an answer
# A contraction written without its apostrophe is certain enough to apply at any usual threshold, and its
# rule is not the model's evidence, so no calibration applies: CONTRACTIONS lists only unambiguous ones.
CONTRACTION_CONFIDENCE = 0.99


class Speller(ManifestModel):
    def __init__(self, folder: Path, settings: Settings, metrics: Metrics | None = None) -> None:
        self.metrics = metrics
        self.manifest: Manifest = load_manifest(folder)
        # int8 about twice as fast on a CPU (docs/speller.md)
        self.precision, (encoder, decoder) = choose_precision(
            folder, self.manifest, ["encoder", "decoder_step"], settings.speller_precision, settings.providers
        )
        self.encoder: ort.InferenceSession = open_session(folder, encoder, settings)
        self.decoder: ort.InferenceSession = open_session(folder, decoder, settings)
        self.provider: str = self.encoder.get_providers()[0]
        inputs = {i.name: i.shape for i in self.decoder.get_inputs()}
        if "values" not in inputs:  # speller 1.2.0 and 1.3.0 read the encoder's memory at every step
            raise ArtifactError(
                f"{folder / decoder.file}: reads the encoder's memory, this server passes attention values (speller "
                "1.4.0 and later): export it again (its run rebuilt by python -m training.onnx_weights at the commit "
                "that exported it, then python -m training.export speller here; README, 'Retrain, export')"
            )
        if "slots" not in inputs:  # speller 1.5.0 and earlier compute every row of a word's group, padding too
            raise ArtifactError(
                f"{folder / decoder.file}: computes padding rows, this server passes live rows only (speller 1.6.0 "
                "and later): export it again (python -m training.export speller; README, 'Retrain, export')"
            )
        if inputs["values"][0] != "words":  # graphs before speller 1.2.0 took a copy per row
            raise ArtifactError(
                f"{folder / decoder.file}: takes encoder outputs per row "
                f"({inputs['values'][0]!r}), this server passes them once per word ('words'): export it again "
                "(python -m training.export speller)"
            )
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
        dictionary = self.manifest.model_extra.get("dictionary", "dictionary.txt")
        counts = read_word_counts(folder, self.manifest, dictionary, "dictionary")
        self.english = EnglishLikeness(counts)
        self.log_count = {w: float(np.log10(max(c, 1))) for w, c in counts.items()}
        # The server's own words are never corrected, and a-z ones may be answers (at the dictionary's least count).
        extra = read_extra_words(settings.speller_extra_words) if settings.speller_extra_words else set()
        floor = min(counts.values(), default=1)
        counts = counts | {w: floor for w in extra if w not in counts and len(w) <= self.max_len}
        self.words = frozenset(counts) | extra
        self.calibration = Calibration.from_manifest(self.manifest.model_extra.get("confidence"))
        # The thresholds tuned per context (min_confidence, the strictest, is what the policy shows); without a
        # calibration, every answer is applied.
        tuned = self.calibration.thresholds if self.calibration else {}
        self.policy = Policy(max(tuned.values(), default=0.0), by_context=tuned)
        if settings.speller_min_confidence is not None:  # one threshold for every word, as the setting says
            self.policy = self.policy.everywhere(settings.speller_min_confidence)
        self.kept = 1 + ALTERNATIVES
        char_ids = {t: i for i, t in enumerate(vocab) if len(t) == 1}
        self.trie = DictionaryTrie(counts.items(), char_ids, len(vocab), self.eos_id)
        self.max_batch_words = settings.speller_max_batch_words
        decoding = self.manifest.model_extra.get("decoding", {})

        def tuned(override: float | None, key: str, default: float | None) -> float | None:
            """A setting from the environment wins over the manifest's tuned value."""
            return override if override is not None else decoding.get(key, default)

        self.set_decoding(
            int(tuned(settings.speller_beam_size, "beam_size", 1) or 1),
            float(tuned(settings.speller_prior_weight, "prior_weight", 0.0) or 0.0),
            float(tuned(settings.speller_edit_penalty, "edit_penalty", 0.0) or 0.0),
            tuned(settings.speller_oov_penalty, "oov_penalty", None),
            tuned(settings.speller_prune_margin, "prune_margin", None),
        )
        # What an unconstrained pass may write: letters and the end of a word, no other special token.
        self.letters_and_end = self.id_to_byte > 0
        self.letters_and_end[self.eos_id] = True

    def set_decoding(
        self,
        beam_size: int,
        prior_weight: float,
        edit_penalty: float,
        oov_penalty: float | None,
        prune_margin: float | None = None,
    ) -> None:
        """The beam's width, pruning (None: none) and the reranking's weights (docs/speller.md), and what follows
        from them."""
        self.beam_size, self.prior_weight, self.edit_penalty, self.oov_penalty = (
            beam_size, prior_weight, edit_penalty, oov_penalty
        )  # fmt: skip
        self.prune_margin = prune_margin
        # Always a float in the compiled step, so that it keeps one compiled version.
        self._margin = float(prune_margin) if prune_margin is not None else np.inf
        # The most a greedy spelling can score in `answers`: its log-probability is at most 0, and one that
        # differs from the misspelling is at least one edit from it. A word whose best dictionary answer reaches
        # this never needs its greedy pass (negative edit penalties have no such bound).
        self.open_ceiling = (
            -edit_penalty + prior_weight * self.trie.min_log_prior - oov_penalty
            if oov_penalty is not None and edit_penalty >= 0
            else np.inf
        )

    def warm_up(self) -> None:
        self.correct_words(["speling", "korrect"])

    def correct_words(self, words: list[str]) -> list[str]:
        """Lowercase a-z words → their corrections ("" where the search found none): `answer_words`' answers."""
        return [a.candidates[0].word if a.candidates else "" for a in self.answer_words(words)]

    def answer_words(self, words: list[str]) -> list[WordAnswer]:
        """Lowercase a-z words → their answers and alternatives, all decoded together: the loop runs over steps,
        never over words; every step is one decoder call per search and a few array operations for the batch."""
        return decode_all(self, words)

    def rows(self, words: list[str]) -> SpellRows:
        """Encode the words (one encoder call) and start both searches for each: the batch they join."""
        src, lengths = self._ids(words)
        if src.shape[1] > self.max_len:  # callers pass candidate_words' words, which never are
            raise ValueError(f"longer than {self.max_len} characters: {[w for w in words if len(w) > self.max_len]}")
        values, keys, h, c = self.encoder.run(None, {"src": src, "src_len": lengths})
        bias = np.where(np.arange(src.shape[1])[None, :] < lengths[:, None], 0, NEG_INF).astype(np.float32)
        n, beam = len(words), self.beam_size

        def decoder_rows(words: np.ndarray, group: int, edits: int) -> DecoderRows:
            """`group` rows for each of `words`; their encoder outputs once per word; `edits` columns of edit
            distances (the empty spelling is j edits from the misspelling's first j characters)."""
            word = np.repeat(words, group)
            start = np.broadcast_to(np.arange(edits, dtype=np.int32), (len(word), edits))
            return DecoderRows(
                group=group,
                word=word,
                token=np.full(len(word), self.sos_id, dtype=np.int64),
                h=h[:, word],
                c=c[:, word],
                nodes=np.full(len(word), ROOT, dtype=np.int32),
                history=np.zeros((len(word), self.max_steps), dtype=np.int64),
                edits=start.copy(),
                edits_prev=np.full(start.shape, self.max_len + self.max_steps, dtype=np.int32),  # no transposition yet
                values=values[words],
                keys=keys[words],
                bias=bias[words],
            )

        score = np.full((n, beam), -np.inf, dtype=np.float32)
        score[:, 0] = 0  # one live hypothesis per word to start with
        searching_open = np.arange(n) if self.oov_penalty is not None else np.arange(0)
        target = np.full((n, self.max_len), -1, dtype=np.int64)
        target[:, : src.shape[1]] = np.where(np.arange(src.shape[1])[None, :] < lengths[:, None], src, -1)
        return SpellRows(
            words=np.array(words, dtype=object),
            target=target,
            length=lengths,
            step=np.zeros(n, dtype=np.int64),
            score=score,
            final_score=np.full((n, self.kept), -np.inf, dtype=np.float32),
            final_ids=np.full((n, self.kept, self.max_steps), self.eos_id, dtype=np.int64),
            open_total=np.zeros(n, dtype=np.float32),
            open_ids=np.full((n, self.max_steps), self.eos_id, dtype=np.int64),
            open_len=np.zeros(n, dtype=np.int64),
            beam=decoder_rows(np.arange(n), 1, self.max_len + 1),  # one row per word until its beam branches
            open=decoder_rows(np.arange(0), 1, 0),
            parked=decoder_rows(searching_open, 1, 0),
        )

    def step(self, rows: SpellRows) -> tuple[np.ndarray, np.ndarray]:
        """One decoding step of every live row, in place. Returns the rows' tokens (nothing to stream here: empty)
        and which words have finished both searches."""
        decoded, ended = self._beam_step(rows) if len(rows.beam) else (0, False)
        if ended and len(rows.parked):  # a parked row waits for its word's beam search, which ends only here
            self._unpark(rows)
        decoded += len(rows.open)
        if len(rows.open):
            self._open_step(rows)
        rows.step += 1
        self._observe(len(rows), decoded)
        return np.empty(0, dtype=np.int64), rows.finished()

    def answers(self, rows: SpellRows, which: np.ndarray, words: list[str]) -> list[WordAnswer]:
        """The answers of the finished words `which` (a boolean mask over the batch's words), `words`: each
        word's best dictionary word and the next best the beam finished, with their scores.

        The greedy pass's spelling (with an oov_penalty) comes first instead when it beats the best dictionary
        word by more than the penalty: for words no dictionary has (codespell's `spinlock`, say).
        """
        scores = rows.final_score[which]
        spelled = self._spell(rows.final_ids[which].reshape(-1, self.max_steps))
        found = [
            [
                Candidate(spelled[i * self.kept + k], float(scores[i, k]))
                for k in range(self.kept)
                if scores[i, k] > -np.inf
            ]
            for i in range(len(words))
        ]
        if self.oov_penalty is not None:
            own = self._spell(rows.open_ids[which])
            score = rows.open_total[which] - self.edit_penalty * cpdist(words, own, scorer=OSA.distance)
            score += self.prior_weight * self.trie.min_log_prior - self.oov_penalty
            # A copy of the misspelling is no answer: the model saying "looks fine" about a word no dictionary
            # has is how it fails on misspellings it cannot place, so the dictionary's best word stands.
            for i, (spelling, word) in enumerate(zip(own, words, strict=True)):
                fresh = bool(spelling) and spelling != word and spelling not in self.words
                if fresh and score[i] > scores[i, 0]:
                    found[i] = [Candidate(spelling, float(score[i]), open=True), *found[i][: self.kept - 1]]
        answers = []
        for word, candidates in zip(words, map(tuple, found), strict=True):
            evidence = answer_evidence(word, candidates, self.english(word), self.log_count)
            answers.append(WordAnswer(word, candidates, evidence))
        return answers

    def _observe(self, words: int, decoded: int) -> None:
        if self.metrics is not None:
            self.metrics.observe_batch("speller", words, decoded)

    def _beam_step(self, rows: SpellRows) -> tuple[int, bool]:
        """The beam search over dictionary words (the trie masks every other continuation). Each finished
        hypothesis is scored log P(word | misspelling) + prior_weight · log P(word)
        − edit_penalty · edit distance(word, misspelling): without the last term, short frequent words
        that end early beat the longer right ones. With beam 1 and both weights 0 it is constrained greedy. With a
        pruning margin, continuations that far below the word's best of the step are dropped (rows saved).
        One decoder call for every live row, then one compiled call (beam_step.py) for the bookkeeping.
        Returns the rows decoded and whether a word's search ended."""
        g, trie = rows.beam, self.trie
        here = np.ascontiguousarray(g.word[:: g.group])  # the searching words, in the order of their rows
        # Only live rows are decoded: since pruning, a third of a large batch's rows were padding.
        feeds, decoded = g.inputs(compiled.live_counts(rows.score, here, g.group))
        logits, h, c = self.decoder.run(None, feeds)
        # feeds["slot_rows"]: each row's place among the decoded ones, where the step reads its logits.
        score, searching, width, parent, token, nodes, history, edits, edits_prev = compiled.beam_step(
            logits, feeds["slot_rows"], here, g.group, self.beam_size,
            g.nodes, g.token, g.history, g.edits, g.edits_prev,
            rows.score, rows.step, rows.target, rows.length, rows.final_score, rows.final_ids,
            trie.allowed, trie.children, trie.log_prior, trie.best_log_prior_below,
            self.eos_id, self.prior_weight, self.edit_penalty, self.max_steps, self._margin,
        )  # fmt: skip
        rows.score[here] = score
        rows.beam = g.gathered(
            searching,
            group=width,
            word=np.repeat(here[searching], width),
            token=token,
            h=h[:, parent],
            c=c[:, parent],
            nodes=nodes,
            history=history,
            edits=edits,
            edits_prev=edits_prev,
        )
        return len(decoded), not searching.all()

    def _unpark(self, rows: SpellRows) -> None:
        """Greedy rows wait for their word's beam search to end: then its best dictionary answer is final, and
        the greedy pass runs only if it could still beat it (a best below `open_ceiling`, a few words in a
        hundred). The answers are those of both passes run side by side, and most words no longer cost a second
        decoder call every step (docs/design.md)."""
        parked = rows.parked
        searching = np.zeros(len(rows), dtype=bool)
        searching[rows.beam.word] = True
        ended = ~searching[parked.word]
        if not ended.any():
            return
        starting = parked.take(ended & (rows.final_score[parked.word, 0] < self.open_ceiling))
        if len(starting):
            rows.open = DecoderRows.concat([rows.open, starting], [0, 0]) if len(rows.open) else starting
        rows.parked = parked.take(~ended)

    def _open_step(self, rows: SpellRows) -> None:
        """The unconstrained greedy pass (letters and end only): its log-probability and spelling."""
        g = rows.open
        logits, h, c = self.decoder.run(None, g.inputs()[0])
        logp = np.where(self.letters_and_end, _log_softmax(logits), -np.inf)
        token = logp.argmax(axis=1)
        rows.open_total[g.word] += logp[np.arange(len(token)), token]
        step = rows.open_len[g.word]
        rows.open_ids[g.word, step] = token
        rows.open_len[g.word] += 1
        writing = (token != self.eos_id) & (step + 1 < self.max_steps)
        rows.open = replace(g, token=token, h=h, c=c).take(writing)

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

    def batch_words(self, words: list[str]) -> list[WordAnswer]:
        """What dynamic batching calls with unknown words of many requests (split's items): each distinct word
        decoded once, though several requests bring it."""
        distinct = list(dict.fromkeys(words))
        answers = dict(zip(distinct, self.answer_words(distinct), strict=True))
        return [answers[word] for word in words]

    def correct_texts(self, texts: list[str], policy: Policy | None = None) -> list[CorrectedText]:
        """Correct every unknown word of every text, all in one batch, as `policy` (the server's) decides."""
        return [(policy or self.policy).decide(r) for r in self.review_texts(texts)]

    def review_texts(self, texts: list[str]) -> list[Reviewed]:
        """Every unknown word of every text decoded in one batch, and what the speller proposes for each."""
        found, unknown = self.unknown_words(texts)
        # Bounded chunks: a full request can hold tens of thousands of distinct words, and one batch of
        # them times the beam would need gigabytes of attention memory.
        fixed: dict[str, WordAnswer] = {}
        for start in range(0, len(unknown), self.max_batch_words):
            chunk = unknown[start : start + self.max_batch_words]
            fixed.update(zip(chunk, self.answer_words(chunk), strict=True))
        return self.review(texts, found, fixed)

    def split(self, texts: list[str]) -> tuple[list[list[Token]], list[str]]:
        """For the scheduler (app/engine/fan_out.py): each text's candidate words, and the unknown ones to decode."""
        return self.unknown_words(texts)

    def join(
        self, texts: list[str], found: list[list[Token]], words: list[str], answers: list[WordAnswer]
    ) -> list[Reviewed]:
        """For the scheduler: each text's proposals from its decoded words' answers; each request's Policy decides
        after, in its route."""
        return self.review(texts, found, dict(zip(words, answers, strict=True)))

    def unknown_words(self, texts: list[str]) -> tuple[list[list[Token]], list[str]]:
        """Each text's candidate words, and the distinct lowercase ones no dictionary knows: those to decode
        (contractions without their apostrophe need no decoding)."""
        found = [candidate_words(text, max_len=self.max_len) for text in texts]
        return found, sorted({t.text.lower() for ts in found for t in ts} - self.words - CONTRACTIONS.keys())

    def review(self, texts: list[str], found: list[list[Token]], fixed: dict[str, WordAnswer]) -> list[Reviewed]:
        """Each text's proposals: its contractions, and for each decoded word (`fixed`: lowercase word → its
        answer) the answer with its confidence and alternatives, in the original's case. Where the answer is
        the word itself there is nothing to propose."""
        reviews = []
        for text, tokens in zip(texts, found, strict=True):
            proposals, contexts = [], []
            for token in tokens:
                word = token.text.lower()
                if word in CONTRACTIONS:
                    suggestion = restore_case(token.text, CONTRACTIONS[word])
                    proposals.append(
                        Proposal(
                            token.start, token.end, token.text, suggestion, CONTRACTION_CONFIDENCE, (), "contraction"
                        )
                    )
                    contexts.append(context(case_shape(token.text), (False, False, False)))
                    continue
                answer = fixed.get(word)
                if answer is None or not answer.candidates or answer.candidates[0].word == word:
                    continue
                beside_names = self.beside_names(token, fixed)
                confidence = self.confidence(answer, token, beside_names)
                choices = [
                    Alternative(restore_case(token.text, c.word), round(float(p), 4))
                    for c, p in zip(answer.candidates, confidence, strict=True)
                ]
                proposals.append(
                    Proposal(
                        token.start, token.end, token.text, choices[0].suggestion, choices[0].confidence,
                        tuple(a for a in choices[1:] if a.suggestion.lower() != word),
                    )
                )  # fmt: skip
                contexts.append(self.context(token, beside_names))
            reviews.append(Reviewed(text, proposals, tuple(contexts)))
        return reviews

    def confidence(self, answer: WordAnswer, token: Token, beside_names: tuple[bool, bool, bool]) -> np.ndarray:
        """[candidates] the probability that each of the word's candidates is the word meant where it stands."""
        features = self.features(answer, token, beside_names)
        return self.calibration(features) if self.calibration else beam_confidence(features)

    def beside_names(self, token: Token, fixed: dict[str, WordAnswer]) -> tuple[bool, bool, bool]:
        """candidate_features' `beside_names` for a word of a text; `fixed`, the answers of its unknown words."""
        return (
            self._is_name(token.follows, token.follows_start, fixed),
            self._is_name(token.precedes),
            token.follows[:1].isupper() and not token.follows_start,
        )

    def context(self, token: Token, beside_names: tuple[bool, bool, bool]) -> str:
        """Where the word stands (evidence.CONTEXTS), which picks its threshold. Besides `beside_names`, a first word
        no dictionary knows makes a name of the next ("Nepenthes gracillima") though it is one edit from a word:
        the features leave that to its confidence, the threshold is the stricter one."""
        return context(case_shape(token.text), (*beside_names, self._is_name(token.follows)))

    def features(self, answer: WordAnswer, token: Token, beside_names: tuple[bool, bool, bool]) -> np.ndarray:
        """[candidates, FEATURES] (evidence.py): what the calibration reads."""
        return candidate_features(answer, case_shape(token.text), token.sentence_start, beside_names)

    def _is_name(self, word: str, sentence_start: bool = False, fixed: dict[str, WordAnswer] | None = None) -> bool:
        """A capitalised word no dictionary knows; at the start of a sentence, only when it is no near misspelling
        either (no answer within one edit: "Ths" in "Ths sentense" is a misspelling, not a name)."""
        if not word[:1].isupper() or word.lower() in self.words:
            return False
        if not sentence_start:
            return True
        answer = (fixed or {}).get(word.lower())
        return not answer or not answer.candidates or OSA.distance(word.lower(), answer.candidates[0].word) > 1

    def apply(self, texts: list[str], found: list[list[Token]], fixed: dict[str, WordAnswer]) -> list[CorrectedText]:
        """The texts corrected as the server's policy decides (`review`, then `Policy.decide`)."""
        return [self.policy.decide(r) for r in self.review(texts, found, fixed)]


def read_extra_words(path: Path) -> set[str]:
    """A word list, one a line (blank lines and # comments skipped), lowercased as the dictionary is."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ArtifactError(f"CHARSERVE_SPELLER_EXTRA_WORDS: cannot read {path}: {e}") from e
    return {line.strip().lower() for line in lines if line.strip() and not line.lstrip().startswith("#")}


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
