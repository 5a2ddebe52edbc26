"""What a deployer sets: API keys, a CORS allow-list, request ids in answers and in the access log."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.auth import KeyFileError, load_key_hashes
from app.main import create_app
from app.settings import Settings

KEY = "s3cret-key-for-tests"


def key_file(folder: Path, *keys: str) -> Path:
    path = folder / "keys.txt"
    lines = ["# sha256 of each accepted key", *(hashlib.sha256(k.encode()).hexdigest() for k in keys), ""]
    path.write_text("\n".join(lines))
    return path


@pytest.fixture(scope="module")
def keyed(tiny_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    keys = key_file(tmp_path_factory.mktemp("keys"), "another-key", KEY)
    with TestClient(create_app(Settings(models_dir=tiny_artifact, api_keys=keys))) as c:
        yield c


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"}, {"Authorization": f"Basic {KEY}"},
     {"Authorization": "Bearer "}],
)  # fmt: skip
def test_without_a_valid_key_requests_get_401(keyed: TestClient, headers: dict) -> None:
    response = keyed.post("/correct", json={"text": "teh"}, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["detail"]


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}])
def test_a_listed_key_is_let_in_either_way(keyed: TestClient, headers: dict) -> None:
    assert keyed.post("/correct", json={"text": "teh"}, headers=headers).status_code == 200


def test_probes_are_open_unless_set_otherwise(keyed: TestClient, tiny_artifact: Path, tmp_path: Path) -> None:
    for path in ("/health", "/ready", "/metrics"):
        assert keyed.get(path).status_code == 200
    settings = Settings(models_dir=tiny_artifact, api_keys=key_file(tmp_path, KEY), api_keys_open_probes=False)
    with TestClient(create_app(settings)) as closed:
        assert closed.get("/ready").status_code == 401
        assert closed.get("/ready", headers={"X-API-Key": KEY}).status_code == 200


def test_a_malformed_key_file_stops_start_up_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    path.write_text(hashlib.sha256(b"k").hexdigest() + "\nnot-a-hash\n")
    with pytest.raises(KeyFileError, match=r"keys.txt:2"):
        load_key_hashes(path)
    path.write_text("# nothing but a comment\n")
    with pytest.raises(KeyFileError, match="no key hashes"):
        load_key_hashes(path)


@pytest.fixture(scope="module")
def plain(tiny_artifact: Path) -> Iterator[TestClient]:
    settings = Settings(models_dir=tiny_artifact, cors_origins=["https://allowed.example"])
    with TestClient(create_app(settings)) as c:
        yield c


def test_cors_answers_only_the_allowed_origins(plain: TestClient, tiny_artifact: Path) -> None:
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    allowed = plain.options("/correct", headers={"Origin": "https://allowed.example", **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://allowed.example"
    refused = plain.options("/correct", headers={"Origin": "https://evil.example", **preflight})
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
    simple = plain.post("/correct", json={"text": "teh"}, headers={"Origin": "https://allowed.example"})
    assert simple.headers["access-control-allow-origin"] == "https://allowed.example"
    assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()
    with TestClient(create_app(Settings(models_dir=tiny_artifact))) as off:  # the default: no CORS headers at all
        answer = off.post("/correct", json={"text": "teh"}, headers={"Origin": "https://allowed.example"})
        assert "access-control-allow-origin" not in answer.headers


def test_a_request_id_is_kept_or_made_returned_and_logged(plain: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="charserve.access"):
        kept = plain.post("/correct", json={"text": "teh"}, headers={"X-Request-ID": "client-42"})
        made = plain.get("/health")
        replaced = plain.get("/health", headers={"X-Request-ID": "x" * 500})
        refused = plain.post("/correct", content=b"{", headers={"content-type": "application/json"})
    assert kept.headers["x-request-id"] == "client-42"
    assert len(made.headers["x-request-id"]) == 32
    assert replaced.headers["x-request-id"] != "x" * 500 and len(replaced.headers["x-request-id"]) == 32
    assert refused.status_code == 422 and refused.headers["x-request-id"]
    logged = [json.loads(r.getMessage()) for r in caplog.records if r.name == "charserve.access"]
    assert {line["request_id"] for line in logged} >= {"client-42", made.headers["x-request-id"]}
