"""Request and response bodies, with the examples shown in the OpenAPI docs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator


class TextsRequest(BaseModel):
    """One text or a list of texts; exactly one of the two."""

    model_config = ConfigDict(extra="forbid")

    text: StrictStr | None = Field(None, description="a single text")
    texts: list[StrictStr] | None = Field(None, min_length=1, description="several texts, answered in the same order")

    @model_validator(mode="after")
    def exactly_one(self) -> TextsRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError('give exactly one of "text" or "texts"')
        for i, text in enumerate(self.items()):
            if not text.strip():
                raise ValueError(f"text {i} is empty or blank")
        return self

    def items(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


class CorrectRequest(TextsRequest):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"text": "Ths sentense has erors"}, {"texts": ["recieve the pakage", "Definately"]}]
        },
    )


class Correction(BaseModel):
    start: int = Field(description="offset of the first character of the word in the input text")
    end: int = Field(description="offset just past the word")
    original: str
    suggestion: str


class CorrectResult(BaseModel):
    text: str = Field(description="the input with every correction applied")
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
                                {"start": 0, "end": 3, "original": "Ths", "suggestion": "This"},
                                {"start": 4, "end": 12, "original": "sentense", "suggestion": "sentence"},
                                {"start": 17, "end": 22, "original": "erors", "suggestion": "errors"},
                            ],
                        }
                    ]
                }
            ]
        }
    )

    results: list[CorrectResult]


class ClassifyRequest(TextsRequest):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"text": "Antonio_Veciana"},
                {"texts": ["Kneuterdijk Palace", "A_Midsummer_Night's_Dream_(1909_film)", "%C5%BDeljko_Ivanek"]},
            ]
        },
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


class PoemRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"form": "wuyan_jueju", "prompt": "日"},
                {"form": "qiyan_jueju", "acrostic": "春夏秋冬"},
                {"form": "wuyan_lushi", "temperature": 0.8, "top_k": 20, "seed": 7},
                {"form": "free", "max_chars": 48, "stream": True},
            ]
        },
    )

    form: PoemForm = Field(
        "wuyan_jueju",
        description="wuyan/qiyan: 5 or 7 characters a line; jueju: 4 lines, lushi: 8; free: the model's own lines",
    )
    prompt: StrictStr = Field("", max_length=11, description="the poem's first characters")
    acrostic: StrictStr = Field("", max_length=16, description="characters that open the lines, one per line (藏头)")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0: greedy (deterministic); above 0: sampling")
    top_k: int | None = Field(None, ge=1, le=1000, description="sample among the k most probable characters")
    seed: int | None = Field(None, ge=0, le=2**63 - 1, description="fixes a sampled poem; the response gives it")
    max_chars: int | None = Field(None, ge=4, description="the free form's length, punctuation included")
    stream: bool = Field(False, description="answer as server-sent events, one per character, then the poem")


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
