"""Every setting, read from environment variables prefixed CHARSERVE_ (e.g. CHARSERVE_MODELS_DIR)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHARSERVE_", extra="ignore")

    models_dir: Path = Field(DEFAULT_MODELS_DIR, description="folder holding one sub-folder per model artifact")
    models: list[str] = Field(["speller"], description="models to load; JSON list in the environment")
    providers: Literal["auto", "cuda", "cpu"] = Field(
        "auto", description="auto: CUDA when onnxruntime-gpu sees a GPU, else CPU; cuda: fail without one"
    )
    intra_op_threads: int = Field(0, ge=0, description="ONNX Runtime threads per session (0: one per core)")
    inference_workers: int = Field(2, ge=1, description="threads running ONNX Runtime off the event loop")
    max_pending: int = Field(64, ge=1, description="requests admitted to inference at once; beyond: 503")
    max_texts: int = Field(64, ge=1, description="texts in one request")
    max_text_chars: int = Field(2000, ge=1, description="characters in one text")
    speller_max_batch_words: int = Field(
        128, ge=1, description="distinct words decoded together; larger requests run in chunks of this size"
    )
    speller_beam_size: int | None = Field(None, ge=1, le=32, description="override the manifest's beam size")
    speller_prior_weight: float | None = Field(
        None, ge=0, description="override the manifest's weight of the word-frequency prior"
    )
    speller_edit_penalty: float | None = Field(
        None, ge=0, description="override the manifest's penalty per edit between misspelling and correction"
    )
    speller_oov_penalty: float | None = Field(
        None, description="override the manifest's penalty for a word outside the dictionary (absent: never)"
    )
    max_body_bytes: int = Field(1_000_000, ge=1, description="request body size; larger bodies get 413 unread")
