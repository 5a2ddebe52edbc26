"""What the speller proposes for a text, and what a request decides to do with it.

The speller reviews every unknown word of a text (`Reviewed`: a `Proposal` per word it would change, with its
confidence and alternatives, and where the word stands). A `Policy` (the server's thresholds, or a request's
own, its words to leave alone, whether to flag doubts) then turns the review into the corrected text, so the
batched decoding never depends on a request's options.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

Status = Literal["applied", "flagged"]
Kind = Literal["spelling", "contraction"]


@dataclass(frozen=True)
class Alternative:
    suggestion: str
    confidence: float


@dataclass(frozen=True)
class Proposal:
    start: int
    end: int
    original: str
    suggestion: str
    confidence: float
    alternatives: tuple[Alternative, ...] = ()
    kind: Kind = "spelling"


@dataclass(frozen=True)
class Reviewed:
    text: str
    proposals: list[Proposal]
    # Per proposal, where its word stands (evidence.CONTEXTS), which may pick its threshold; kept beside the
    # proposals, not in them, since a correction answers with a proposal's fields. Empty: no context known.
    contexts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Correction(Proposal):
    status: Status = "applied"


@dataclass(frozen=True)
class CorrectedText:
    text: str
    corrections: list[Correction]


@dataclass(frozen=True)
class Policy:
    """Apply a proposal whose confidence reaches its threshold: `by_context`'s for the context its word stands in
    (the thresholds tuned per context), else `min_confidence`; below it, return it flagged (the text unchanged)
    when `flag_uncertain`, else drop it. Words of `ignore_words` (any case) are never touched."""

    min_confidence: float
    flag_uncertain: bool = False
    ignore_words: frozenset[str] = field(default_factory=frozenset)
    by_context: Mapping[str, float] = field(default_factory=dict)

    def everywhere(self, min_confidence: float) -> Policy:
        """This policy with one threshold for every word, whatever its context: what a setting or a request's own
        `min_confidence` asks for."""
        return replace(self, min_confidence=min_confidence, by_context={})

    def decide(self, reviewed: Reviewed) -> CorrectedText:
        corrections = []
        contexts = reviewed.contexts or ("",) * len(reviewed.proposals)
        for p, context in zip(reviewed.proposals, contexts, strict=True):
            if p.original.lower() in self.ignore_words:
                continue
            if p.confidence >= self.by_context.get(context, self.min_confidence):
                corrections.append(Correction(**vars(p), status="applied"))
            elif self.flag_uncertain:
                corrections.append(Correction(**vars(p), status="flagged"))
        applied = [c for c in corrections if c.status == "applied"]
        return CorrectedText(_apply(reviewed.text, applied), corrections)


def _apply(text: str, corrections: list[Correction]) -> str:
    parts, last = [], 0
    for fix in corrections:
        parts += [text[last : fix.start], fix.suggestion]
        last = fix.end
    return "".join(parts) + text[last:]
