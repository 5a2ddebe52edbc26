"""Every setting, read from environment variables prefixed CHARSERVE_ (e.g. CHARSERVE_MODELS_DIR)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Precision = Literal["auto", "float32", "int8"]


def precision_field(graphs: str) -> Any:
    return Field(
        "auto",
        description=f"{graphs}: auto: int8 on a CPU when the artifact has them, else float32 "
        "(int8's quantized LSTM runs on the CPU only)",
    )


DEFAULT_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


HEADER_TIMEOUT = (
    "a request's head must arrive within this many seconds of the connection's opening or the previous answer; "
    "past it 408 (uvicorn started with UVICORN_HTTP=app.api.http_protocol:..., as the Makefile and images do)"
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHARSERVE_", extra="ignore")

    models_dir: Path = Field(DEFAULT_MODELS_DIR, description="folder holding one sub-folder per model artifact")
    models: list[str] = Field(
        ["speller", "classifier", "poet"], description="models to load; JSON list in the environment"
    )
    providers: Literal["auto", "cuda", "cpu"] = Field(
        "auto", description="auto: CUDA when onnxruntime-gpu sees a GPU, else CPU; cuda: fail without one"
    )
    intra_op_threads: int = Field(
        0, ge=0, description="ONNX Runtime threads per session (0: one per core this process may use)"
    )
    workers: int = Field(
        1,
        ge=1,
        description="HTTP worker processes of `charserve serve`; above 1, one engine process beside them holds the "
        "models and batches the requests of all (1: one process does everything)",
    )
    engine_address: str = Field(
        "", description="set by `charserve serve` for its HTTP workers: the engine process's socket (empty: none)"
    )
    inference_workers: int = Field(
        2, ge=1, description="model calls (batches) running at once, all models together, off the event loop"
    )
    batch_max_texts: int = Field(
        64,
        ge=1,
        description="texts gathered from concurrent requests into one model call (the classifier; a larger "
        "request runs in pieces of this size); 1 turns batching off (the speller: requests never share a call)",
    )
    batch_max_wait_ms: float = Field(
        2.0, ge=0, description="how long the first text of a batch waits for others to join it"
    )
    max_queue_texts: int = Field(
        256, ge=1, description="texts waiting for a batch, per model; a request that would overflow it gets 503"
    )
    max_concurrent_requests: int = Field(
        96, ge=0, description="requests inside the app at once; past it 503 with Retry-After, unparsed (0: no bound)"
    )
    max_texts: int = Field(64, ge=1, description="texts in one request")
    max_text_chars: int = Field(2000, ge=1, description="characters in one text")
    speller_precision: Precision = precision_field("the speller's graphs")
    poet_precision: Precision = precision_field("the poet's step graph")
    classifier_precision: Precision = precision_field("the classifier's graph")
    speller_max_batch_words: int = Field(
        128,
        ge=1,
        description="words decoded together: a speller call holds at most this many, taken from the waiting "
        "requests in turn, so a request with more runs in pieces that share the workers with other requests",
    )
    speller_scheduling: Literal["continuous", "dynamic"] = Field(
        "dynamic",  # measured faster on a CPU core (docs/design.md): each join copies the running batch
        description="continuous: each unknown word joins the running beam search at the next step; "
        "dynamic: the unknown words of concurrent requests gathered into calls (speller_max_batch_words, "
        "batch_max_wait_ms)",
    )
    speller_join_fraction: float = Field(
        0.5,
        ge=0,
        description="continuous: words join the running batch once this fraction of its words wait "
        "(each join copies the batch's encoder outputs; 0: at every step)",
    )
    speller_max_queue_words: int = Field(
        1024,
        ge=1,
        description="words waiting to be decoded (dynamic: counting at most speller_max_batch_words of each "
        "request, what a newcomer waits behind); a request arriving beyond: 503",
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
    speller_prune_margin: float | None = Field(
        None,
        gt=0,
        description="override the manifest's beam pruning: a hypothesis more than this many nats (natural-log "
        "probability) below its word's best of the step is dropped",
    )
    speller_min_confidence: float | None = Field(
        None,
        ge=0,
        le=1,
        description="apply a correction only at this confidence or above, to every word (a request may set its own); "
        "absent: the thresholds tuned on validation data and kept in the manifest, one for a lowercase word beside "
        "no name and one for a word with capitals or beside a name",
    )
    speller_extra_words: Path | None = Field(
        None, description="a word list (one word a line) the speller never corrects, and may answer with"
    )
    poet_max_batch: int = Field(64, ge=1, description="poems written together, one character of each per step")
    poet_max_queue: int = Field(256, ge=1, description="poems waiting to join the batch; beyond: 503")
    poet_scheduling: Literal["continuous", "static", "static_padded"] = Field(
        "continuous",
        description="continuous: a poem joins the running batch at the next step; static: only an empty batch; "
        "static_padded: as static, and an ended poem's row is computed until the batch's last poem ends "
        "(the textbook static batch; a benchmark baseline)",
    )
    request_deadline_s: float = Field(
        30.0, gt=0, description="a request's model work must finish within this many seconds; beyond: 504"
    )
    access_log: bool = Field(True, description="one JSON line per request on the charserve.access logger")
    max_body_bytes: int = Field(
        1_000_000, ge=1, description="request body size; past it 413, counted as the body arrives (chunked too)"
    )
    header_timeout_s: float = Field(10.0, gt=0, description=HEADER_TIMEOUT)
    body_timeout_s: float = Field(
        10.0, gt=0, description="a request's whole body must arrive within this many seconds; past it 408"
    )
    api_keys: Path | None = Field(
        None,
        json_schema_extra={"shown_default": "unset: no keys needed"},
        description="file of SHA-256 hex digests of the accepted API keys, one a line; when set, requests need "
        "`Authorization: Bearer <key>` or `X-API-Key: <key>` (else 401)",
    )
    api_keys_open_probes: bool = Field(
        True, description="with api_keys: /health, /ready and /metrics answer without a key"
    )
    cors_origins: list[str] = Field(
        [], description='origins browsers may call the API from (JSON list, e.g. ["https://example.org"]); none: off'
    )
