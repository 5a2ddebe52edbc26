"""The bundled models on ONNX Runtime's CUDA provider, against the CPU provider. CI has no GPU: these tests skip
there, and run where onnxruntime-gpu sees one (`pip install -e ".[gpu,dev]"`)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from app.adapters.classifier import Classifier
from app.adapters.poet import Poet
from app.adapters.speller.model import Speller
from app.main import create_app
from app.settings import Settings
from tests.conftest import BUNDLED_MODELS

pytestmark = pytest.mark.skipif(
    "CUDAExecutionProvider" not in ort.get_available_providers(),
    reason="needs onnxruntime-gpu (the `gpu` extra) and a GPU it can see",
)

MISSPELLINGS = ["speling", "korrect", "recieve", "teh", "spinlcok", "definately", "adress", "wierd", "untill"]
NAMES = ["Antonio_Veciana", "Lake_Geneva", "Acer_saccharum", "The_Beatles", "Moby-Dick", "Université_Laval"]


def on(provider: str, **overrides: str) -> Settings:
    return Settings(providers=provider, **overrides)


def test_every_model_runs_on_cuda_when_asked() -> None:
    settings = on("cuda")
    speller = Speller(BUNDLED_MODELS / "speller", settings)
    assert speller.precision == "float32"  # the quantized LSTM runs on the CPU only
    others = Classifier(BUNDLED_MODELS / "classifier", settings), Poet(BUNDLED_MODELS / "poet", settings)
    for model in (speller, *others):
        assert model.provider == "CUDAExecutionProvider"


def test_speller_answers_on_cuda_are_the_cpu_answers_in_float32() -> None:
    cuda = Speller(BUNDLED_MODELS / "speller", on("cuda"))
    cpu = Speller(BUNDLED_MODELS / "speller", on("cpu", speller_precision="float32"))
    assert cuda.correct_words(MISSPELLINGS) == cpu.correct_words(MISSPELLINGS)
    assert cuda.correct_words(["spinlcok"]) == ["spinlock"]


def test_classifier_scores_on_cuda_match_the_cpu() -> None:
    cuda = Classifier(BUNDLED_MODELS / "classifier", on("cuda")).probabilities(NAMES)
    cpu = Classifier(BUNDLED_MODELS / "classifier", on("cpu")).probabilities(NAMES)
    np.testing.assert_allclose(cuda, cpu, atol=1e-4)
    assert (cuda.argmax(1) == cpu.argmax(1)).all()


def test_poet_step_on_cuda_matches_the_cpu() -> None:
    cuda = Poet(BUNDLED_MODELS / "poet", on("cuda"))
    cpu = Poet(BUNDLED_MODELS / "poet", on("cpu", poet_precision="float32"))  # a CPU would serve the int8 graph
    assert cuda.precision == "float32"
    rows = [cpu.rows([cpu.plan("wuyan_jueju", prompt="月")]) for _ in range(2)]
    for _ in range(12):  # the same characters fed to both: the logits and states must agree at every step
        feeds = {"token": rows[1].token, "h": rows[1].state.h, "c": rows[1].state.c}
        got = cuda.lm.session.run(None, feeds)
        want = cpu.lm.session.run(None, feeds)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, atol=2e-3, rtol=1e-3)
        cpu.step(rows[1])
    poem = cuda.write([cuda.plan("qiyan_jueju", acrostic="春夏秋冬")])[0]
    assert [line[0] for line in poem.lines] == list("春夏秋冬")
    assert all(len(line) == 7 for line in poem.lines)


def test_served_app_reports_cuda_and_answers() -> None:
    with TestClient(create_app(on("cuda"))) as client:
        ready = client.get("/ready").json()
        assert {m["name"]: m["provider"] for m in ready["models"]} == dict.fromkeys(
            ("speller", "classifier", "poet"), "CUDAExecutionProvider"
        )
        assert client.post("/correct", json={"text": "teh spinlcok"}).json()["results"][0]["text"] == "the spinlock"
        assert client.post("/classify", json={"text": "Lake_Geneva"}).json()["results"][0]["label"] == "Place"
        poem = client.post("/poem", json={"form": "wuyan_jueju", "acrostic": "春夏秋冬"}).json()
        assert [line[0] for line in poem["lines"]] == list("春夏秋冬")
