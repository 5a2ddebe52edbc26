"""Poet inference: a poem request → a plan of forced and free positions → decoding one character per step,
every live poem of the batch in one graph call, the form's rules applied as one boolean mask per step.

A poem's rows live in `PoemRows` (arrays, one row per poem), so poems can join and leave the running batch
between steps (app/engine/continuous.py). Nothing here loops over characters or vocabulary entries in Python.
The form logic is the same for every poet; only the language model's step and the memory it carries per row
differ (app/adapters/poet_lm.py: the LSTM's (h, c), the Transformer's key/value cache), chosen by the manifest.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from app.adapters.poet_lm import LMState, open_language_model
from app.engine.protocol import decode_all
from app.metrics import Metrics
from app.runtime.artifacts import ArtifactError, Manifest, ManifestModel, load_manifest
from app.settings import Settings

CONTENT, FREE = -1, -2  # plan entries: any poem character / the free form's rules; ≥ 0: that token, forced
MIN_LINE, MAX_LINE = 3, 11  # the free form's line lengths: short lines would let greedy decoding repeat them


@dataclass(frozen=True)
class Form:
    lines: int
    chars: int  # characters per line, punctuation excluded


FORMS: dict[str, Form | None] = {
    "wuyan_jueju": Form(4, 5),
    "qiyan_jueju": Form(4, 7),
    "wuyan_lushi": Form(8, 5),
    "qiyan_lushi": Form(8, 7),
    "free": None,
}


class PoemRequestError(ValueError):
    """The request cannot be written as asked; the message says why, for the client."""


@dataclass
class Plan:
    """One validated poem request, ready to decode."""

    form: str
    forced: np.ndarray  # [steps] CONTENT, FREE or a forced token id; the last step of a regular form is <eos>
    acrostic: np.ndarray  # [≤ MAX_ACROSTIC] token ids (the free form forces them at each line start)
    max_chars: int
    temperature: float
    top_k: int
    noise: np.ndarray  # [steps] uniform draws, one per step: sampling is reproducible whatever the batch
    seed: int | None


@dataclass
class PoemRows:
    """The running batch: row i is one poem being written."""

    token: np.ndarray  # [B] int64: the last token, the graph's next input
    state: LMState  # the language model's memory of each row, opaque here
    pos: np.ndarray  # [B] characters written so far (punctuation included)
    line_len: np.ndarray  # [B] characters since the last line end
    acro_next: np.ndarray  # [B] the next acrostic character of a free-form poem
    acro_len: np.ndarray  # [B]
    acrostic: np.ndarray  # [B, A]
    forced: np.ndarray  # [B, S]
    history: np.ndarray  # [B, S] tokens written; -1 beyond pos
    noise: np.ndarray  # [B, S]
    temperature: np.ndarray  # [B] float32, as the logits: a float64 one would make every draw float64, 3x slower
    top_k: np.ndarray  # [B]
    max_chars: np.ndarray  # [B]

    def __len__(self) -> int:
        return len(self.token)

    def take(self, index: np.ndarray) -> PoemRows:
        """The rows at `index` (ints or a boolean mask), in that order."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return PoemRows(**{k: v.take(index) if k == "state" else v[index] for k, v in values.items()})

    @staticmethod
    def concat(parts: list[PoemRows]) -> PoemRows:
        arrays = {f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(PoemRows)
                  if f.name != "state"}  # fmt: skip
        return PoemRows(state=type(parts[0].state).concat([p.state for p in parts]), **arrays)


@dataclass(frozen=True)
class Poem:
    poem: str
    lines: list[str]
    form: str
    seed: int | None


class Poet(ManifestModel):
    def __init__(self, folder: Path, settings: Settings, metrics: Metrics | None = None) -> None:
        self.metrics, self.folder = metrics, folder
        self.manifest: Manifest = load_manifest(folder)
        self.lm, self.precision = open_language_model(folder, self.manifest, settings)
        self.provider: str = self.lm.session.get_providers()[0]
        self.max_chars = self.manifest.limits["max_chars"]
        self.steps = self.max_chars + 1  # room for <eos>
        vocab = self.manifest.vocab
        self.vocab = np.array(vocab, dtype=object)
        self.char_id = {ch: i for i, ch in enumerate(vocab)}
        special = self.manifest.special_tokens
        self.bos, self.eos = special["bos"], special["eos"]
        missing = [p for p in "，。" if p not in self.char_id]
        if missing:
            raise ArtifactError(f"{folder / 'manifest.json'}: the vocabulary lacks {missing}")
        self.comma, self.period = self.char_id["，"], self.char_id["。"]
        finals = [self.char_id[p] for p in "。？！" if p in self.char_id]
        size = len(vocab)
        # What each token is, as [V] booleans: the step's mask is built from these with whole-array operations.
        self.is_content = np.array([len(t) == 1 and _is_han(t) for t in vocab])
        self.is_comma = np.zeros(size, bool)
        self.is_comma[self.comma] = True
        self.is_final = np.zeros(size, bool)
        self.is_final[finals] = True
        self.is_eos = np.zeros(size, bool)
        self.is_eos[self.eos] = True
        self.is_line_end = self.is_comma | self.is_final
        self.max_acrostic = 16
        # Requests may be typed in traditional characters; a simplified poet reads them converted (OpenCC,
        # one character for one), so 春風 asks for the same acrostic as 春风.
        self.to_script = _identity
        if self.manifest.model_extra.get("script", "simplified") == "simplified":
            import opencc

            self.to_script = opencc.OpenCC("t2s").convert

    def warm_up(self) -> None:
        self.write([self.plan("wuyan_jueju", acrostic="春风"), self.plan("free", max_chars=24)])

    # --- requests → plans -------------------------------------------------------------------------------------

    def convert(self, text: str) -> str:
        converted = self.to_script(text)
        return converted if len(converted) == len(text) else text  # never change what line a character opens

    def ids(self, text: str, field: str) -> list[int]:
        """Characters → ids; anything the poet cannot write is named in the error."""
        outside = sorted({ch for ch in text if ch not in self.char_id or not self.is_content[self.char_id[ch]]})
        if outside:
            script = self.manifest.model_extra.get("script", "simplified")
            raise PoemRequestError(
                f"{field}: {''.join(outside)!r} not in the poet's vocabulary "
                f"(it writes {script} Chinese characters, no punctuation)"
            )
        return [self.char_id[ch] for ch in text]

    def plan(
        self,
        form: str,
        *,
        prompt: str = "",
        acrostic: str = "",
        temperature: float = 0.0,
        top_k: int | None = None,
        seed: int | None = None,
        max_chars: int | None = None,
    ) -> Plan:
        if form not in FORMS:
            raise PoemRequestError(f"form {form!r} is not one of {sorted(FORMS)}")
        shape = FORMS[form]
        prompt, acrostic = self.convert(prompt), self.convert(acrostic)
        prompt_ids, acrostic_ids = self.ids(prompt, "prompt"), self.ids(acrostic, "acrostic")
        if prompt and acrostic and prompt[0] != acrostic[0]:
            raise PoemRequestError(f"the prompt starts with {prompt[0]!r} but the acrostic with {acrostic[0]!r}")
        if shape is None:
            max_chars = self.max_chars if max_chars is None else max_chars
            if max_chars > self.max_chars:
                raise PoemRequestError(f"max_chars {max_chars} is over the limit of {self.max_chars}")
            if len(acrostic) > self.max_acrostic:
                raise PoemRequestError(f"the acrostic has {len(acrostic)} characters; the limit is {self.max_acrostic}")
            if len(acrostic) * (MIN_LINE + 1) > max_chars:
                raise PoemRequestError(f"max_chars {max_chars} is too few for {len(acrostic)} acrostic lines")
            if len(prompt) > min(MAX_LINE, max_chars - 1):
                raise PoemRequestError(f"the prompt has {len(prompt)} characters; a free-form line holds {MAX_LINE}")
            forced = np.full(self.steps, FREE, np.int64)
            forced[max_chars + 1 :] = self.eos
        else:
            if max_chars is not None:
                raise PoemRequestError(f"max_chars applies to the free form only; {form} has a fixed length")
            if len(acrostic) > shape.lines:
                raise PoemRequestError(f"the acrostic has {len(acrostic)} characters; {form} has {shape.lines} lines")
            if len(prompt) > shape.chars:
                raise PoemRequestError(f"the prompt has {len(prompt)} characters; a {form} line holds {shape.chars}")
            max_chars = shape.lines * (shape.chars + 1)
            if max_chars > self.max_chars:  # a poet that reads fewer positions than the LSTM's 200
                raise PoemRequestError(f"{form} needs {max_chars} characters; this poet writes {self.max_chars}")
            line = np.full(shape.chars + 1, CONTENT, np.int64)
            forced = np.tile(line, shape.lines)
            ends = np.arange(shape.lines) * (shape.chars + 1) + shape.chars
            forced[ends] = np.where(np.arange(shape.lines) % 2 == 0, self.comma, self.period)
            forced[ends[: len(acrostic_ids)] - shape.chars] = acrostic_ids
            forced = np.concatenate([forced, np.full(self.steps - len(forced), self.eos, np.int64)])
        forced[: len(prompt_ids)] = prompt_ids
        seed_used = seed if temperature > 0 else None
        if temperature > 0 and seed_used is None:
            seed_used = int.from_bytes(os.urandom(4), "little")
        noise = np.random.default_rng(seed_used).random(self.steps) if temperature > 0 else np.zeros(self.steps)
        return Plan(
            form=form,
            forced=forced,
            # The free form forces these at line starts; a prompt has already written the first.
            acrostic=np.array(acrostic_ids[1 if prompt else 0 :] if shape is None else [], np.int64),
            max_chars=max_chars,
            temperature=float(temperature),
            top_k=int(top_k or len(self.vocab)),
            noise=noise,
            seed=seed_used,
        )

    # --- plans → rows → steps ---------------------------------------------------------------------------------

    def rows(self, plans: list[Plan]) -> PoemRows:
        n = len(plans)
        acrostic = np.full((n, self.max_acrostic), -1, np.int64)
        for i, plan in enumerate(plans):
            acrostic[i, : len(plan.acrostic)] = plan.acrostic
        return PoemRows(
            token=np.full(n, self.bos, np.int64),
            state=self.lm.start(n),
            pos=np.zeros(n, np.int64),
            line_len=np.zeros(n, np.int64),
            acro_next=np.zeros(n, np.int64),
            acro_len=np.array([len(p.acrostic) for p in plans], np.int64),
            acrostic=acrostic,
            forced=np.stack([p.forced for p in plans]),
            history=np.full((n, self.steps), -1, np.int64),
            noise=np.stack([p.noise for p in plans]).astype(np.float64),
            temperature=np.array([p.temperature for p in plans], np.float32),
            top_k=np.array([p.top_k for p in plans], np.int64),
            max_chars=np.array([p.max_chars for p in plans], np.int64),
        )

    def step(self, rows: PoemRows) -> tuple[np.ndarray, np.ndarray]:
        """Write one character of every poem in `rows` (updated in place) → (tokens [B], finished [B])."""
        logits, rows.state = self.lm.step(rows.token, rows.state)
        n = len(rows)
        at = np.arange(n)
        forced = rows.forced[at, rows.pos]
        free_row = forced == FREE
        prev = rows.token
        prev_start = (prev == self.bos) | self.is_line_end[prev]  # the next character starts a line
        prev_final = self.is_final[prev]
        left = rows.max_chars - rows.pos  # positions left before <eos>
        acro_left = rows.acro_len - rows.acro_next

        # The free form's rules, as forced tokens or as which kinds of token each row may take. A line holds
        # MIN_LINE to MAX_LINE characters; each acrostic line left needs MIN_LINE + 1 positions.
        acro_now = free_row & prev_start & (acro_left > 0)
        forced = np.where(acro_now, rows.acrostic[at, np.minimum(rows.acro_next, rows.acrostic.shape[1] - 1)], forced)
        after_char = free_row & ~prev_start
        squeezed = (acro_left > 0) & (left <= (MIN_LINE + 1) * acro_left + 1)
        must_close = after_char & (squeezed | (rows.line_len >= MAX_LINE))
        forced = np.where(after_char & (acro_left == 0) & (left <= 1), self.period, forced)
        forced = np.where(free_row & prev_final & ~acro_now & (left <= MIN_LINE), self.eos, forced)
        free_row &= forced == FREE
        line_ok = after_char & ((rows.line_len >= MIN_LINE) | must_close)
        allow_content = (forced == CONTENT) | (free_row & ~must_close)
        allow_comma = free_row & line_ok & (((left >= MIN_LINE + 2) & (acro_left == 0)) | (acro_left > 0))
        allow_final = free_row & line_ok & (acro_left == 0)
        allow_eos = free_row & prev_final & (acro_left == 0)
        allowed = (
            (allow_content[:, None] & self.is_content)
            | (allow_comma[:, None] & self.is_comma)
            | (allow_final[:, None] & self.is_final)
            | (allow_eos[:, None] & self.is_eos)
        )
        self.ban_repeats(rows, allowed, allow_content & (self.is_content[prev] | self.is_line_end[prev]))
        chosen = self.choose(np.where(allowed, logits, -np.inf), rows, forced < 0)
        token = np.where(forced >= 0, forced, chosen)

        rows.history[at, rows.pos] = token
        rows.pos += 1
        rows.line_len = np.where(self.is_line_end[token], 0, rows.line_len + 1)
        rows.acro_next += acro_now
        rows.token = token
        finished = (token == self.eos) | (rows.pos >= rows.forced.shape[1])
        if self.metrics is not None:
            self.metrics.observe_batch(self.name, n, n)
        return token, finished

    def ban_repeats(self, rows: PoemRows, allowed: np.ndarray, rows_to_check: np.ndarray) -> None:
        """No character pair twice in a poem, and no two lines opening with the same character: greedy decoding
        cannot loop, no line can repeat another, and lines do not all start alike (一身…，一别…，一夜…).

        For each row, the characters that followed the previous character earlier in the poem (after a line
        end: that opened an earlier line) are struck from `allowed`, all rows at once. A row left with
        nothing allowed keeps its unbanned choices.
        """
        width = int(rows.pos.max()) if len(rows) else 0
        if width < 2:
            return
        history = rows.history[:, :width]
        earlier = np.arange(width - 1)[None, :] < (rows.pos - 1)[:, None]
        at_line_start = self.is_line_end[rows.token]
        after_line_end = self.is_line_end[np.maximum(history[:, :-1], 0)]
        same = np.where(at_line_start[:, None], after_line_end, history[:, :-1] == rows.token[:, None])
        row, col = np.nonzero(same & earlier & rows_to_check[:, None])
        follower = history[row, col + 1]
        first = np.nonzero(at_line_start & rows_to_check)[0]  # the first line's opener followed <bos>
        row, follower = np.concatenate([row, first]), np.concatenate([follower, history[first, 0]])
        keep = self.is_content[follower]
        row, follower = row[keep], follower[keep]
        saved = allowed[row, follower].copy()
        allowed[row, follower] = False
        empty = ~allowed.any(axis=1)
        if empty.any():
            restore = empty[row]
            allowed[row[restore], follower[restore]] = saved[restore]

    def choose(self, masked: np.ndarray, rows: PoemRows, free: np.ndarray) -> np.ndarray:
        """Greedy where temperature is 0; elsewhere a draw from softmax(logits / temperature), restricted to the
        top-k when the request gives k, using the row's own uniform number for this position (inverse CDF), so a
        seed fixes the poem. Inverse-CDF sampling needs no order: only rows with a top-k sort, and only their
        k largest."""
        sampling = (rows.temperature > 0) & free
        chosen = np.zeros(len(masked), np.int64)
        greedy = np.nonzero(~sampling)[0]
        chosen[greedy] = masked[greedy].argmax(axis=1)
        whole = np.nonzero(sampling & (rows.top_k >= masked.shape[1]))[0]
        if len(whole):
            u = rows.noise[whole, rows.pos[whole]]
            chosen[whole] = self._draw(masked[whole] / rows.temperature[whole, None], u)
        top_k = np.nonzero(sampling & (rows.top_k < masked.shape[1]))[0]
        if len(top_k):
            logits = masked[top_k] / rows.temperature[top_k, None]
            k = int(rows.top_k[top_k].max())
            top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
            values = np.take_along_axis(logits, top, axis=1)
            order = np.argsort(-values, axis=1, kind="stable")
            top, values = np.take_along_axis(top, order, axis=1), np.take_along_axis(values, order, axis=1)
            values[np.arange(k)[None, :] >= rows.top_k[top_k, None]] = -np.inf
            pick = self._draw(values, rows.noise[top_k, rows.pos[top_k]])
            chosen[top_k] = top[np.arange(len(top_k)), pick]
        return chosen

    @staticmethod
    def _draw(logits: np.ndarray, u: np.ndarray) -> np.ndarray:
        """For each row, the column whose cumulative softmax first passes that row's uniform number u. In the
        logits' dtype throughout (float32), computed in place: the draw is several passes over [rows, vocab]."""
        cdf = np.exp(logits - logits.max(axis=1, keepdims=True))
        np.cumsum(cdf, axis=1, out=cdf)
        target = (u * cdf[:, -1]).astype(cdf.dtype)[:, None]
        return np.minimum((cdf <= target).sum(axis=1), logits.shape[1] - 1)

    def poem(self, rows: PoemRows, i: int, plan: Plan) -> Poem:
        """Row i's finished poem."""
        tokens = rows.history[i, : rows.pos[i]]
        text = "".join(self.vocab[tokens[tokens != self.eos]])
        lines = re.findall(r"[^，。？！]+", text)
        return Poem(text, lines, plan.form, plan.seed)

    def answers(self, rows: PoemRows, which: np.ndarray, plans: list[Plan]) -> list[Poem]:
        """The finished poems of the rows `which` (a boolean mask)."""
        return [self.poem(rows, int(i), plan) for i, plan in zip(np.flatnonzero(which), plans, strict=True)]

    def text_of(self, token: int) -> str | None:
        return None if token == self.eos else str(self.vocab[token])

    def write(self, plans: list[Plan]) -> list[Poem]:
        """Every poem of `plans` in one static batch, start to end (tests, warm-up and benchmarks)."""
        return decode_all(self, plans)


def _identity(text: str) -> str:
    return text


def _is_han(ch: str) -> bool:
    return bool(re.match(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]", ch))
