"""Requests share the models' calls without harming one another, against the bundled models and the real
schedulers, in-process: a request whose item makes a model call raise fails alone, and a small request beside
large ones is answered in a fraction of their time."""

from __future__ import annotations

import asyncio
import random
import string
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from app.main import create_app
from app.settings import Settings

DEADLINE_S = 4.0  # short, so that the large requests below end at theirs; small requests take milliseconds


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # uvicorn's loop


@pytest.fixture(scope="module")
async def served() -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The app with its lifespan run (models loaded, schedulers started), and a client that sees a 500 as a
    response, as a real client would."""
    app = create_app(Settings(access_log=False, request_deadline_s=DEADLINE_S))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://charserve", timeout=60) as client:
            yield client, app


def failing_on(marker: str, call: Callable[[list[str]], Any]) -> Callable[[list[str]], Any]:
    """`call`, raising as a model call does on an item it cannot take, whenever an item contains `marker`."""

    def poisoned(items: list[str]) -> Any:
        if any(marker in item for item in items):
            raise RuntimeError("the model cannot take this item")
        return call(items)

    return poisoned


TEN_NAMES = ["Antonio_Veciana", "Kneuterdijk Palace", "Conus alba", "Tanaka River", "Leeds F.C.",
             "A_Midsummer_Night's_Dream_(1909_film)", "%C5%BDeljko_Ivanek", "Acacia minor", "Anna Smith",
             "Oxford University"]  # fmt: skip
TEN_TEXTS = ["teh cat", "wich one", "abuot it", "peple say", "becuase of", "thier house", "the frist day",
             "a sentance", "recieve it", "definately"]  # fmt: skip


async def ten_beside_one(client: httpx.AsyncClient, endpoint: str, texts: list[str], poison: bytes) -> list:
    """The ten texts as ten requests, and the poisoned body, all at once: the responses, the poisoned last."""
    sent = [client.post(endpoint, json={"text": text}) for text in texts]
    sent.insert(5, client.post(endpoint, content=poison, headers={"content-type": "application/json"}))
    responses = await asyncio.gather(*sent)
    return responses[:5] + responses[6:] + [responses[5]]


@pytest.mark.anyio
@pytest.mark.parametrize("endpoint", ["/classify", "/correct"])
async def test_a_poisoned_request_among_ten_fails_alone(
    served: tuple[httpx.AsyncClient, Any], endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eleven requests share the model's calls; one of them holds an item the model raises on. The ten others
    get 200 and the answers they get alone; the culprit gets a 500."""
    client, app = served
    texts = TEN_NAMES if endpoint == "/classify" else TEN_TEXTS
    alone = [(await client.post(endpoint, json={"text": text})).json() for text in texts]
    model, call = ("classifier", "probabilities") if endpoint == "/classify" else ("speller", "answer_words")
    adapter = app.state.registry.models[model]
    monkeypatch.setattr(adapter, call, failing_on("zzpoison", getattr(adapter, call)))
    for _ in range(3):  # in whatever batches they fall
        *answered, poisoned = await ten_beside_one(client, endpoint, texts, b'{"text": "Poison zzpoisonzz"}')
        assert [r.status_code for r in answered] == [200] * 10
        assert_same_answers([r.json() for r in answered], alone)
        assert poisoned.status_code == 500


@pytest.mark.anyio
@pytest.mark.parametrize("endpoint", ["/classify", "/correct"])
async def test_a_lone_surrogate_beside_ten_requests_fails_only_its_own(
    served: tuple[httpx.AsyncClient, Any], endpoint: str
) -> None:
    """`\\ud800` in JSON is a string no model can encode; it is refused before it joins a batch."""
    client, _ = served
    texts = TEN_NAMES if endpoint == "/classify" else TEN_TEXTS
    alone = [(await client.post(endpoint, json={"text": text})).json() for text in texts]
    *answered, poisoned = await ten_beside_one(client, endpoint, texts, b'{"text": "abc \\ud800"}')
    assert [r.status_code for r in answered] == [200] * 10
    assert_same_answers([r.json() for r in answered], alone)
    assert poisoned.status_code >= 400


def assert_same_answers(answers: list[dict], alone: list[dict]) -> None:
    """The classifier's scores and the speller's confidences move a little with the batch an item shares (int8
    arithmetic, padding): the labels and corrections must be the same, the scores within 0.01 and the
    confidences within 0.03."""
    for got, expected in zip(answers, alone, strict=True):
        for a, b in zip(got["results"], expected["results"], strict=True):
            assert a.keys() == b.keys()
            if "scores" in a:
                assert a["label"] == b["label"]
                assert a["scores"] == pytest.approx(b["scores"], abs=0.01)
            else:
                assert a["text"] == b["text"]
                assert list(map(without_numbers, a["corrections"])) == list(map(without_numbers, b["corrections"]))
                assert [c["confidence"] for c in a["corrections"]] == pytest.approx(
                    [c["confidence"] for c in b["corrections"]], abs=0.03
                )


def without_numbers(correction: dict) -> dict:
    return {k: v for k, v in correction.items() if k not in ("confidence", "alternatives")}


def random_words(seed: int, texts: int, chars: int) -> list[str]:
    """Texts of random lowercase words: every word unknown to the dictionary, each one decoded."""
    rng = random.Random(seed)
    found = []
    for _ in range(texts):
        words: list[str] = []
        while sum(len(w) + 1 for w in words) < chars - 11:
            words.append("".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 10))))
        found.append(" ".join(words))
    return found


@pytest.mark.anyio
async def test_small_requests_beside_two_large_ones_are_answered_at_once(
    served: tuple[httpx.AsyncClient, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two /correct requests of thousands of unknown words each, many seconds of work alone, more than their deadline:
    a one-name /classify and a one-word /correct sent meanwhile wait at most a piece of theirs per worker. The
    large ones get their 504, and once they have, their remaining pieces are never computed."""
    client, app = served
    speller = app.state.registry.models["speller"]
    calls: list[float] = []  # when each call of the speller's words started
    decode = speller.answer_words
    monkeypatch.setattr(speller, "answer_words", lambda words: calls.append(time.perf_counter()) or decode(words))
    large = [
        asyncio.create_task(client.post("/correct", json={"texts": random_words(seed, 16, 2000)})) for seed in (1, 2)
    ]
    await asyncio.sleep(1.0)  # both are being decoded by now
    started = time.perf_counter()
    classified = await client.post("/classify", json={"text": "Kneuterdijk Palace"})
    classify_s = time.perf_counter() - started
    started = time.perf_counter()
    corrected = await client.post("/correct", json={"text": "teh"})
    correct_s = time.perf_counter() - started
    assert [r.status_code for r in await asyncio.gather(*large)] == [504, 504]  # more work than their deadline
    timed_out = time.perf_counter()
    calls_by_then = len(calls)
    await asyncio.sleep(1.0)
    assert classified.status_code == 200 and classified.json()["results"][0]["label"] == "Place"
    assert corrected.status_code == 200 and corrected.json()["results"][0]["text"] == "the"
    assert classify_s < 1.0, f"/classify took {classify_s:.2f} s beside two large /correct requests"
    assert correct_s < 3.0, f"a one-word /correct took {correct_s:.2f} s beside two large /correct requests"
    assert calls_by_then > 4  # the large requests were decoded a piece at a time
    # After their 504 only the pieces already in progress may run, one per worker at most; then nothing.
    assert len([t for t in calls if t > timed_out]) <= Settings().inference_workers
