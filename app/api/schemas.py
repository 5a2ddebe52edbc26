"""Request and response bodies, with the examples shown in the OpenAPI docs."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictStr,
    Tag,
    create_model,
    model_validator,
)

# White space as JSON Schema's patterns (ECMA-262's `\s`) know it, written out: `\s` itself means more in Python's
# re (`str.isspace`: U+0085, U+001C-U+001F) and less elsewhere, so the server and a client reading the schema
# would disagree on texts such as "\x85". Written out, the server (Python's re), ECMA-262 and Rust's regex agree.
NOT_BLANK = r"[^\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
_NOT_BLANK = re.compile(NOT_BLANK)


def _not_blank(text: str) -> str:
    if not _NOT_BLANK.search(text):
        raise ValueError("the text is empty or blank")
    return text


# A text holds a character that is not white space.
NonBlank = Annotated[StrictStr, AfterValidator(_not_blank), Field(json_schema_extra={"pattern": NOT_BLANK})]


def texts_schema(*examples: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """The schema says what the validator enforces: exactly one of the two keys, neither of them null."""

    def extra(schema: dict[str, Any]) -> None:
        schema["oneOf"] = [{"required": ["text"]}, {"required": ["texts"]}]
        for name in ("text", "texts"):
            schema["properties"][name].pop("default", None)
        if examples:
            schema["examples"] = list(examples)

    return extra


class TextsRequest(BaseModel):
    """One text or a list of texts; exactly one of the two."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=texts_schema())

    text: NonBlank = Field(None, description="a single text, not blank")  # type: ignore[assignment]
    texts: list[NonBlank] = Field(  # type: ignore[assignment]
        None, min_length=1, description="several texts, none blank, answered in the same order"
    )

    @model_validator(mode="after")
    def exactly_one(self) -> TextsRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError('give exactly one of "text" or "texts"')
        return self

    def items(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


class CorrectRequest(TextsRequest):
    model_config = ConfigDict(
        json_schema_extra=texts_schema(
            {"text": "Ths sentense has erors"},
            {"texts": ["recieve the pakage", "Definately"]},
            {"text": "I dont use Grafanna at wrok", "flag_uncertain": True, "ignore_words": ["Grafanna"]},
            {"text": "I moved to Kubernetes in Seatle", "min_confidence": 0.5},
        )
    )

    min_confidence: float | None = Field(
        None,
        strict=True,
        allow_inf_nan=False,
        ge=0,
        le=1,
        description="apply a correction only at this confidence or above, to every word; absent: the server's "
        "threshold (CHARSERVE_SPELLER_MIN_CONFIDENCE, by default those tuned on validation data: one for a lowercase "
        "word beside no name, one for a word with capitals or beside a name)",
    )
    flag_uncertain: StrictBool = Field(
        False, description="also return the corrections below the threshold, with status 'flagged', unapplied"
    )
    ignore_words: list[StrictStr] = Field(
        default_factory=list, max_length=10_000, description="words never touched (any case), e.g. the user's own"
    )


# The speller's answers are dataclasses (app/adapters/speller/decision.py); these models read them by attribute,
# in pydantic's compiled validator, rather than through dataclasses.asdict's recursive copy of each.
class Alternative(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    suggestion: str
    confidence: float = Field(ge=0, le=1, description="the probability that this is the word meant")


class Correction(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    start: int = Field(description="offset of the first character of the word in the input text")
    end: int = Field(description="offset just past the word")
    original: str
    suggestion: str = Field(description="the best correction (in the text when status is 'applied')")
    confidence: float = Field(ge=0, le=1, description="the probability that the suggestion is the word meant")
    alternatives: list[Alternative] = Field(description="other candidates, most probable first (at most 3)")
    kind: Literal["spelling", "contraction"] = Field(description="contraction: an apostrophe put back (dont)")
    status: Literal["applied", "flagged"] = Field(
        description="applied: in the returned text; flagged: below the threshold, the text left as written"
    )


class CorrectResult(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    text: str = Field(description="the input with every applied correction")
    corrections: list[Correction]


class CorrectResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "results": [
                        {
                            "text": "This sentence has errors",
                            "corrections": [
                                {
                                    "start": 0, "end": 3, "original": "Ths", "suggestion": "This",
                                    "confidence": 0.72, "alternatives": [{"suggestion": "The", "confidence": 0.05}],
                                    "kind": "spelling", "status": "applied",
                                },
                                {
                                    "start": 4, "end": 12, "original": "sentense", "suggestion": "sentence",
                                    "confidence": 0.98, "alternatives": [], "kind": "spelling", "status": "applied",
                                },
                                {
                                    "start": 17, "end": 22, "original": "erors", "suggestion": "errors",
                                    "confidence": 0.94, "alternatives": [], "kind": "spelling", "status": "applied",
                                },
                            ],
                        }
                    ]
                }
            ]
        }
    )  # fmt: skip

    results: list[CorrectResult]


class ClassifyRequest(TextsRequest):
    model_config = ConfigDict(
        json_schema_extra=texts_schema(
            {"text": "Antonio_Veciana"},
            {"texts": ["Kneuterdijk Palace", "A_Midsummer_Night's_Dream_(1909_film)", "%C5%BDeljko_Ivanek"]},
        )
    )


class ClassifyResult(BaseModel):
    label: str = Field(description="the most probable type: Person, Place, Organisation, Work or Species")
    scores: dict[str, float] = Field(description="every type's probability; they sum to 1")


class ClassifyResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "results": [
                        {
                            "label": "Person",
                            "scores": {
                                "Person": 0.93,
                                "Place": 0.02,
                                "Organisation": 0.02,
                                "Work": 0.02,
                                "Species": 0.01,
                            },
                        }
                    ]
                }
            ]
        }
    )

    results: list[ClassifyResult]


class ModelStatus(BaseModel):
    name: str
    version: str
    provider: str = Field(description="the ONNX Runtime execution provider in use")


class ReadyResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ready",
                    "models": [
                        {"name": "speller", "version": "1.6.1", "provider": "CPUExecutionProvider"},
                        {"name": "classifier", "version": "1.4.0", "provider": "CPUExecutionProvider"},
                        {"name": "poet", "version": "1.4.0", "provider": "CPUExecutionProvider"},
                    ],
                }
            ]
        }
    )

    status: str
    models: list[ModelStatus]


class HealthResponse(BaseModel):
    status: str = "ok"


class ErrorResponse(BaseModel):
    detail: str | list = Field(description="what is wrong with the request")


PoemForm = Literal["wuyan_jueju", "qiyan_jueju", "wuyan_lushi", "qiyan_lushi", "free"]
PoetName = Literal["poet", "poet_transformer"]


class PoemOptions(BaseModel):
    """What every form shares. The forms below set how many characters `prompt` and `acrostic` may hold: one line's
    worth and one per line. Beyond the schema the poet refuses (422, saying why) characters outside its vocabulary,
    a prompt and an acrostic that open differently, and a free form too short for its acrostic's lines."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(
        0.0,
        strict=True,
        ge=0.0,
        le=2.0,
        allow_inf_nan=False,
        description="0: greedy (deterministic); above 0: sampling",
    )
    top_k: int | None = Field(
        None, strict=True, ge=1, le=1000, description="sample among the k most probable characters"
    )
    seed: int | None = Field(
        None, strict=True, ge=0, le=2**63 - 1, description="fixes a sampled poem; the response gives it"
    )
    stream: StrictBool = Field(False, description="answer as server-sent events, one per character, then the poem")
    model: PoetName = Field("poet", description="the poet: the LSTM, or the Transformer where it is loaded")


def fixed_form(name: str, title: str, lines: int, chars: int, *, default: bool = False) -> type[PoemOptions]:
    """The request for one regular form: a prompt of at most one line, an acrostic of at most one per line."""
    return create_model(
        title,
        __base__=PoemOptions,
        __doc__=f"{lines} lines of {chars} characters" + ("; the form when none is given" if default else ""),
        form=(Literal[name], Field(name) if default else Field()),  # type: ignore[valid-type]
        prompt=(StrictStr, Field("", max_length=chars, description="the poem's first characters")),
        acrostic=(
            StrictStr,
            Field("", max_length=lines, description="characters that open the lines, one per line (藏头)"),
        ),
    )


WuyanJueju = fixed_form("wuyan_jueju", "WuyanJueju", lines=4, chars=5, default=True)
QiyanJueju = fixed_form("qiyan_jueju", "QiyanJueju", lines=4, chars=7)
WuyanLushi = fixed_form("wuyan_lushi", "WuyanLushi", lines=8, chars=5)
QiyanLushi = fixed_form("qiyan_lushi", "QiyanLushi", lines=8, chars=7)


class FreePoem(PoemOptions):
    form: Literal["free"] = Field(description="the model's own lines, of 3 to 11 characters")
    prompt: StrictStr = Field("", max_length=11, description="the poem's first characters")
    acrostic: StrictStr = Field("", max_length=16, description="characters that open the lines, one per line (藏头)")
    max_chars: int | None = Field(
        None, strict=True, ge=4, description="the poem's length, punctuation included (at most the poet's own limit)"
    )


def _form(body: Any) -> str | None:
    """Which form a body asks for: its `form`, wuyan_jueju when it has none."""
    if isinstance(body, dict):
        form = body.get("form", "wuyan_jueju")
        return form if isinstance(form, str) else None
    return getattr(body, "form", None)


PoemRequest = Annotated[
    Annotated[WuyanJueju, Tag("wuyan_jueju")]
    | Annotated[QiyanJueju, Tag("qiyan_jueju")]
    | Annotated[WuyanLushi, Tag("wuyan_lushi")]
    | Annotated[QiyanLushi, Tag("qiyan_lushi")]
    | Annotated[FreePoem, Tag("free")],
    Discriminator(_form),
]
POEM_EXAMPLES = [
    {"form": "wuyan_jueju", "prompt": "日"},
    {"form": "qiyan_jueju", "acrostic": "春夏秋冬"},
    {"form": "wuyan_lushi", "temperature": 0.8, "top_k": 20, "seed": 7},
    {"form": "free", "max_chars": 48, "stream": True},
]


class PoemResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "poem": "春风吹雨夜深时，夏月初生一片云。秋色不知何处去，冬风不得到人间。",
                    "lines": ["春风吹雨夜深时", "夏月初生一片云", "秋色不知何处去", "冬风不得到人间"],
                    "form": "qiyan_jueju",
                    "seed": None,
                }
            ]
        }
    )

    poem: str = Field(description="the whole poem, punctuation included")
    lines: list[str] = Field(description="its lines, without their punctuation")
    form: PoemForm
    seed: int | None = Field(description="the seed of a sampled poem (null when greedy)")
