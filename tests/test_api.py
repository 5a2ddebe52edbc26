"""The HTTP API: answers, bad input, overload, readiness."""

import asyncio
import gc
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest

from app.api.middleware import ConcurrencyLimitMiddleware
from app.engine.fan_out import INLINE_CHARS
from app.main import create_app
from app.metrics import Metrics, watch_event_loop
from app.runtime.memory import YOUNG_COLLECTION_THRESHOLD
from app.runtime.sessions import select_providers
from app.settings import Settings
from tests.conftest import BUNDLED_MODELS


@pytest.fixture(scope="module")
def client(tiny_artifact: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(models_dir=tiny_artifact, max_texts=4, max_text_chars=50))) as c:
        yield c


@pytest.fixture(scope="module")
def bundled() -> Iterator[TestClient]:
    for name in ("speller", "classifier", "poet"):
        assert (BUNDLED_MODELS / name / "manifest.json").is_file(), f"models/{name} is part of the repository"
    with TestClient(create_app(Settings())) as c:
        yield c


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"


def test_start_up_objects_are_frozen_out_of_garbage_collection_while_serving(tiny_artifact: Path) -> None:
    """Full collections would otherwise walk every dictionary word and trie node of the models, under load."""
    gc.unfreeze()
    before = gc.get_threshold()
    with TestClient(create_app(Settings(models_dir=tiny_artifact))) as c:
        assert c.get("/ready").status_code == 200
        assert gc.get_freeze_count() > 0
        # and the young generation is collected when garbage piles up, not every few requests in flight
        assert gc.get_threshold()[0] == YOUNG_COLLECTION_THRESHOLD
    assert gc.get_freeze_count() == 0  # both released with the app
    assert gc.get_threshold() == before


def test_ready_is_503_until_models_are_loaded(tiny_artifact: Path) -> None:
    app = create_app(Settings(models_dir=tiny_artifact))
    before = TestClient(app)  # not entered: the lifespan has not run, nothing is loaded
    response = before.get("/ready")
    assert response.status_code == 503
    assert response.json()["status"] == "loading"
    assert before.post("/correct", json={"text": "teh"}).status_code == 503


def test_one_result_per_text_in_order(client: TestClient) -> None:
    texts = ["first one", "second, 2nd!", "  third  "]
    results = client.post("/correct", json={"texts": texts}).json()["results"]
    assert len(results) == 3
    for text, result in zip(texts, results, strict=True):
        # Whatever the tiny model suggests, every correction is a word of the input and the rest is untouched.
        rebuilt, last = "", 0
        for fix in result["corrections"]:
            assert text[fix["start"] : fix["end"]] == fix["original"]
            rebuilt += text[last : fix["start"]] + fix["suggestion"]
            last = fix["end"]
        assert rebuilt + text[last:] == result["text"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"text": ""}, 422, "empty or blank"),
        ({"text": "  \n"}, 422, "empty or blank"),
        ({"texts": []}, 422, "at least 1 item"),
        ({"texts": ["ok", ""]}, 422, "'texts', 1], 'msg': 'Value error, the text is empty or blank'"),
        ({"text": 5}, 422, "valid string"),
        ({"texts": ["ok", None]}, 422, "valid string"),
        ({"texts": "not a list"}, 422, "valid list"),
        ({}, 422, 'exactly one of "text" or "texts"'),
        ({"text": "a", "texts": ["b"]}, 422, 'exactly one of "text" or "texts"'),
        ({"text": "a", "extra": 1}, 422, "Extra inputs"),
        ({"text": "x" * 51}, 413, "text 0 has 51 characters; the limit is 50"),
        ({"texts": ["a"] * 5}, 413, "5 texts in one request; the limit is 4"),
    ],
)
@pytest.mark.parametrize("endpoint", ["/correct", "/classify"])
def test_bad_input_gets_a_4xx_that_says_why(
    client: TestClient, endpoint: str, body: dict, status: int, message: str
) -> None:
    response = client.post(endpoint, json=body)
    assert response.status_code == status
    assert message in str(response.json()["detail"])


@pytest.mark.parametrize("endpoint", ["/correct", "/classify"])
def test_invalid_json(client: TestClient, endpoint: str) -> None:
    response = client.post(endpoint, content=b'{"text": ', headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "JSON decode error" in str(response.json()["detail"])


@pytest.mark.parametrize("endpoint", ["/correct", "/classify"])
def test_wrong_content_type(client: TestClient, endpoint: str) -> None:
    response = client.post(endpoint, content=b"text=teh", headers={"content-type": "text/plain"})
    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]


def test_oversized_body_is_refused_unread(tiny_artifact: Path) -> None:
    with TestClient(create_app(Settings(models_dir=tiny_artifact, max_body_bytes=100))) as small:
        response = small.post("/correct", json={"text": "word " * 50})
        assert response.status_code == 413
        assert "the limit is 100" in response.json()["detail"]


def test_overload_is_refused_fast_with_retry_after(tiny_artifact: Path) -> None:
    with TestClient(create_app(Settings(models_dir=tiny_artifact, speller_scheduling="dynamic"))) as dynamic:
        batcher = dynamic.app.state.schedulers["speller"].items  # its unknown words, batched dynamically
        batcher.queued_items = batcher.max_queue  # as if that many texts were waiting
        response = dynamic.post("/correct", json={"text": "teh"})
        batcher.queued_items = 0
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "overloaded" in response.json()["detail"]


def test_overload_is_refused_fast_when_words_batch_continuously(tiny_artifact: Path) -> None:
    settings = Settings(models_dir=tiny_artifact, speller_scheduling="continuous", speller_max_queue_words=2)
    with TestClient(create_app(settings)) as continuous:
        words = continuous.app.state.schedulers["speller"].items
        assert continuous.post("/correct", json={"text": "teh wich abuot"}).status_code == 200  # 3 words: in
        words.waiting.count += 2  # as if two words were waiting (the idle loop is not woken)
        response = continuous.post("/correct", json={"text": "teh"})
        words.waiting.count -= 2
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "overloaded" in response.json()["detail"]


def test_a_request_past_its_deadline_gets_504(tiny_artifact: Path) -> None:
    settings = Settings(models_dir=tiny_artifact, request_deadline_s=1e-6)
    with TestClient(create_app(settings)) as impatient:
        response = impatient.post("/correct", json={"texts": ["teh wich abuot peple becuase thier frist"] * 4})
        assert response.status_code == 504
        assert "deadline exceeded" in response.json()["detail"]
        assert impatient.get("/health").status_code == 200


def test_metrics_count_requests_batches_and_tokens(tiny_artifact: Path) -> None:
    with TestClient(create_app(Settings(models_dir=tiny_artifact))) as fresh:
        fresh.post("/correct", json={"texts": ["teh wich", "abuot"]})
        fresh.post("/classify", json={"texts": ["Anna_Smith", "Conus alba", "Tanaka River"]})
        fresh.post("/classify", json={"text": ""})
        text = fresh.get("/metrics").text
    assert 'charserve_requests_total{endpoint="/correct",status="200"} 1.0' in text
    assert 'charserve_requests_total{endpoint="/classify",status="422"} 1.0' in text
    assert 'charserve_request_seconds_count{endpoint="/classify"} 2.0' in text
    # The warm-up's batch of 2 names, then the request's one batch of 3.
    assert 'charserve_batch_size_count{model="classifier"} 2.0' in text
    assert 'charserve_batch_size_sum{model="classifier"} 5.0' in text
    tokens = next(line for line in text.splitlines() if line.startswith('charserve_tokens_total{model="speller"}'))
    assert float(tokens.split()[-1]) > 0
    assert 'charserve_queue_depth{model="speller"} 0.0' in text
    assert 'charserve_batch_requests_count{model="classifier"} 1.0' in text
    # One model call timed in its thread: the request's batch (the warm-up runs before the batcher exists).
    assert 'charserve_model_call_seconds_count{model="classifier"} 1.0' in text
    seconds = re.search(r'charserve_model_call_seconds_sum\{model="classifier"\} (\S+)', text)
    assert seconds and float(seconds.group(1)) > 0


def test_event_loop_lag_counts_a_blocked_loop() -> None:
    """The watcher's timer fires late by about as long as something blocked the loop: that shows in the buckets."""
    metrics = Metrics()

    async def block_once() -> None:
        watcher = asyncio.create_task(watch_event_loop(metrics, interval_s=0.005))
        await asyncio.sleep(0.02)
        time.sleep(0.12)  # what a stall looks like to the loop: nothing else runs meanwhile
        await asyncio.sleep(0.02)
        watcher.cancel()

    asyncio.run(block_once())
    text = generate_latest(metrics.registry).decode()
    under = float(re.search(r'charserve_event_loop_lag_seconds_bucket\{le="0.1"\} (\S+)', text).group(1))
    count = float(re.search(r"charserve_event_loop_lag_seconds_count (\S+)", text).group(1))
    assert count - under == 1  # the one wake-up after the block, over 100 ms late; the others on time


def test_the_served_app_watches_its_event_loop(tiny_artifact: Path) -> None:
    with TestClient(create_app(Settings(models_dir=tiny_artifact))) as fresh:
        time.sleep(0.1)
        fresh.get("/health")
        text = fresh.get("/metrics").text
    count = re.search(r"charserve_event_loop_lag_seconds_count (\S+)", text)
    assert count and float(count.group(1)) >= 1


def test_openapi_documents_schemas_and_examples(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    correct = spec["paths"]["/correct"]["post"]
    assert correct["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("CorrectRequest")
    assert spec["components"]["schemas"]["CorrectRequest"]["examples"][0] == {"text": "Ths sentense has erors"}
    assert {"413", "415", "422", "503"} <= set(correct["responses"])


def test_classify_answers_one_distribution_per_name_in_order(client: TestClient) -> None:
    names = ["Anna_Smith", "Tanaka River", "Conus alba"]
    results = client.post("/classify", json={"texts": names}).json()["results"]
    assert len(results) == 3
    labels = ["Person", "Place", "Organisation", "Work", "Species"]
    for result in results:
        assert list(result["scores"]) == labels
        assert abs(sum(result["scores"].values()) - 1) < 1e-3
        assert result["label"] == max(result["scores"], key=result["scores"].get)
    alone = client.post("/classify", json={"text": "Tanaka River"}).json()["results"][0]
    assert alone == results[1]  # batched with others or alone, a name gets the same answer


def test_classify_reads_underscores_and_percent_encoding_as_the_plain_name(client: TestClient) -> None:
    texts = ["Jos%C3%A9_M%C3%BCller", "José Müller", "José_Müller"]
    results = client.post("/classify", json={"texts": texts}).json()["results"]
    assert results[0] == results[1] == results[2]


def test_a_model_left_out_of_the_settings_answers_503(tiny_artifact: Path) -> None:
    with TestClient(create_app(Settings(models_dir=tiny_artifact, models=["speller"]))) as speller_only:
        response = speller_only.post("/classify", json={"text": "Antonio_Veciana"})
        assert response.status_code == 503
        assert "classifier is not loaded" in response.json()["detail"]
        assert speller_only.post("/correct", json={"text": "teh"}).status_code == 200


# The bundled, trained models: real answers.


def test_bundled_model_fixes_a_sentence_and_keeps_case(bundled: TestClient) -> None:
    result = bundled.post("/correct", json={"text": "Ths sentense has erors."}).json()["results"][0]
    assert result["text"] == "This sentence has errors."
    first = result["corrections"][0]
    assert {k: first[k] for k in ("start", "end", "original", "suggestion", "kind", "status")} == {
        "start": 0, "end": 3, "original": "Ths", "suggestion": "This", "kind": "spelling", "status": "applied"
    }  # fmt: skip
    assert 0 < first["confidence"] <= 1 and len(first["alternatives"]) <= 3
    assert all(a["suggestion"] != "This" and 0 <= a["confidence"] <= 1 for a in first["alternatives"])


def test_bundled_model_restores_upper_case_and_leaves_the_rest(bundled: TestClient) -> None:
    text = "RECIEVE it by 3pm, naïve café — don't wory!"
    result = bundled.post("/correct", json={"text": text}).json()["results"][0]
    assert result["text"] == "RECEIVE it by 3pm, naïve café — don't worry!"


def test_bundled_model_leaves_known_words_alone(bundled: TestClient) -> None:
    text = "The quick brown fox jumps over the lazy dog, twice."
    assert bundled.post("/correct", json={"text": text}).json()["results"][0] == {"text": text, "corrections": []}


def test_bundled_ready_reports_models_and_providers(bundled: TestClient) -> None:
    models = bundled.get("/ready").json()["models"]
    # CPU here and in CI; CUDA where onnxruntime-gpu sees a GPU (tests/test_cuda.py checks that path).
    provider = select_providers("auto")[0]
    expected = [(name, provider) for name in ("speller", "classifier", "poet")]
    assert [(m["name"], m["provider"]) for m in models] == expected


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("Antonio_Veciana", "Person"),
        ("A_Midsummer_Night's_Dream_(1909_film)", "Work"),
        ("%C5%BDeljko_Ivanek", "Person"),
        ("Kneuterdijk Palace", "Place"),
    ],
)
def test_bundled_classifier_tells_plain_cases(bundled: TestClient, name: str, label: str) -> None:
    assert bundled.post("/classify", json={"text": name}).json()["results"][0]["label"] == label


@pytest.mark.parametrize("form", ["wuyan_jueju", "qiyan_jueju", "wuyan_lushi", "qiyan_lushi"])
def test_bundled_poet_writes_each_form_and_acrostic(bundled: TestClient, form: str) -> None:
    lines, chars = (4 if "jueju" in form else 8), (5 if form.startswith("wuyan") else 7)
    acrostic = "春夏秋冬花鸟山水"[:lines]
    poem = bundled.post("/poem", json={"form": form, "acrostic": acrostic}).json()
    assert [len(line) for line in poem["lines"]] == [chars] * lines
    assert "".join(line[0] for line in poem["lines"]) == acrostic
    assert poem["poem"] == "".join(line + "，。"[i % 2] for i, line in enumerate(poem["lines"]))
    sampled = bundled.post("/poem", json={"form": form, "temperature": 1.0, "top_k": 20, "seed": 5}).json()
    assert [len(line) for line in sampled["lines"]] == [chars] * lines and sampled["seed"] == 5


def test_past_the_concurrency_limit_requests_are_refused_unread_with_json(tiny_artifact: Path) -> None:
    settings = Settings(models_dir=tiny_artifact, max_concurrent_requests=1)
    with TestClient(create_app(settings)) as limited:
        assert limited.post("/correct", json={"text": "teh"}).status_code == 200  # one at a time is fine
        gate = next(m for m in middleware_chain(limited.app) if isinstance(m, ConcurrencyLimitMiddleware))
        gate.active = 1  # as if one request were in progress
        refused = limited.post("/correct", content=b"not even json", headers={"content-type": "text/plain"})
        assert limited.get("/health").status_code == 200  # probes still get through
        assert limited.get("/metrics").status_code == 200
        gate.active = 0
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert "overloaded" in refused.json()["detail"]  # a JSON body, though the request's own body was not JSON


def middleware_chain(app: object) -> Iterator[object]:
    """The ASGI apps a request passes through, outermost first."""
    current = app.middleware_stack  # type: ignore[attr-defined]
    while current is not None:
        yield current
        current = getattr(current, "app", None)


def test_continuous_and_dynamic_speller_scheduling_answer_alike(tiny_artifact: Path) -> None:
    texts = ["Teh peple wich came abuot thier frist sentance. " * 40, "zzyzx qqq teh " * 100, "Nothing here"]
    assert sum(map(len, texts)) > INLINE_CHARS  # tokenised in a worker thread
    bodies = []
    for scheduling in ("continuous", "dynamic"):
        settings = Settings(models_dir=tiny_artifact, speller_scheduling=scheduling, speller_max_batch_words=3)
        with TestClient(create_app(settings)) as c:
            response = c.post("/correct", json={"texts": texts})
            assert response.status_code == 200
            bodies.append(response.json())
    assert bodies[0] == bodies[1]
    assert bodies[0]["results"][0]["corrections"]  # the misspellings were looked at
