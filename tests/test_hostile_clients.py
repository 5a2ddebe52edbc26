"""Careless and hostile clients: every invalid request gets a 4xx with a JSON body, no client holds the server.

In-process through Starlette's TestClient where that is faithful; on a real uvicorn socket (127.0.0.1, a free
port) for what only a socket shows: stalled bodies, pipelined requests after a 500, SIGTERM with a stalled client.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from app.api import http_protocol
from app.api.schemas import NOT_BLANK
from app.main import create_app
from app.settings import Settings
from tests.conftest import ROOT

LIMIT = 64 * 1024  # the body limit of these tests' apps


@pytest.fixture(scope="module")
def client(tiny_artifact: Path) -> Iterator[TestClient]:
    settings = Settings(models_dir=tiny_artifact, max_texts=4, max_text_chars=50, max_body_bytes=LIMIT)
    with TestClient(create_app(settings)) as c:  # an exception escaping the app would fail the test
        yield c


def post_raw(client: TestClient, path: str, body: bytes | str) -> httpx.Response:
    return client.post(path, content=body, headers={"content-type": "application/json"})


def assert_json_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["detail"], body
    return body


# --- bodies that are not valid JSON, or JSON no server can answer about: 422, JSON, never 500 or 400 ----------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/correct", r'{"text": "abc \ud800"}'),
        ("/classify", r'{"text": "abc \ud800"}'),
        ("/correct", r'{"texts": ["fine", "\udc00 low"]}'),
        ("/poem", r'{"prompt": "\ud800"}'),
        ("/poem", r'{"acrostic": "春\udfff"}'),
        ("/correct", r'{"text": "ok", "\ud800unknown": 1}'),  # the 422 handler once echoed this key and failed
        ("/classify", r'{"text": "ok", "extra": "\ud800"}'),
    ],
)
def test_a_lone_surrogate_is_422(client: TestClient, path: str, body: str) -> None:
    detail = assert_json_error(post_raw(client, path, body), 422)["detail"]
    assert "surrogate" in json.dumps(detail)


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
@pytest.mark.parametrize("field", ["temperature", "top_k", "seed", "max_chars"])
def test_nan_and_infinity_are_422(client: TestClient, number: str, field: str) -> None:
    assert_json_error(post_raw(client, "/poem", f'{{"form": "free", "{field}": {number}}}'), 422)


@pytest.mark.parametrize(
    "body",
    [
        b'{"text": "caf\xe9"}',  # Latin-1, not UTF-8
        b'\xff\xfe{"text": "x"}',
        b"[" * 10_000 + b"]" * 10_000,
        b'{"text": "x", "deep": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        b'{"seed": ' + b"7" * 5000 + b"}",
        b'{"text": ',
        b"",
    ],
    ids=["latin-1", "bom-utf16", "nested-10000", "nested-in-field", "5000-digits", "truncated", "empty"],
)
def test_a_body_that_is_not_valid_json_is_422(client: TestClient, body: bytes) -> None:
    for path in ("/correct", "/poem"):
        assert_json_error(post_raw(client, path, body), 422)


@pytest.mark.parametrize(
    "body",
    [
        {"form": "free", "temperature": "0.5"},
        {"stream": "yes"},
        {"stream": 1},
        {"top_k": 2.0, "temperature": 0.5},
        {"seed": True, "temperature": 0.5},
        {"form": "wuyan_jueju", "max_chars": 20},
        {"form": "wuyan_jueju", "acrostic": "春夏秋冬春"},  # five lines' openings for four lines
        {"model": "poet_transformer"},  # a poet this server is not set to serve: the request's to change
    ],
)
def test_poem_fields_are_not_coerced_and_per_form_limits_hold(client: TestClient, body: dict) -> None:
    assert_json_error(client.post("/poem", json=body), 422)


@pytest.mark.parametrize(
    "body", [{}, {"text": "a", "texts": ["b"]}, {"texts": []}, {"texts": ["ok", " \n"]}, {"text": "\ufeff\u3000\t"}]
)
def test_exactly_one_of_text_or_texts_and_none_blank(client: TestClient, body: dict) -> None:
    assert_json_error(client.post("/correct", json=body), 422)


def test_blank_is_what_the_schema_pattern_says() -> None:
    """The server's test of a blank text is the pattern the schema publishes, read by Python's re as by others."""
    for text in ("\x85", "\x1c", "a", "\u200b"):  # not white space to ECMA-262 (JSON Schema), though \x85 and
        assert re.search(NOT_BLANK, text)  # \x1c are to str.isspace
    for text in ("", " \t\n\r\v\f", "\u00a0\u2028\u3000\ufeff"):
        assert not re.search(NOT_BLANK, text)


def test_a_declared_length_over_the_limit_is_refused_unread(client: TestClient) -> None:
    response = post_raw(client, "/correct", json.dumps({"text": "x" * LIMIT}))
    assert "limit" in assert_json_error(response, 413)["detail"]


def test_an_unhandled_error_is_a_json_500_and_the_next_request_is_answered(client: TestClient) -> None:
    classifier = client.app.state.schedulers["classifier"]
    working = classifier.fn

    def broken(texts: list[str]) -> list:
        raise RuntimeError("the model call failed")

    classifier.fn = broken
    try:
        body = assert_json_error(client.post("/classify", json={"text": "Antonio_Veciana"}), 500)
        assert "RuntimeError" not in body["detail"]  # the cause goes to the log, not to the client
    finally:
        classifier.fn = working
    assert client.post("/classify", json={"text": "Antonio_Veciana"}).status_code == 200


# --- on a real socket ------------------------------------------------------------------------------------------


class LiveServer:
    """uvicorn serving an app on 127.0.0.1 in a thread of this process, so that tests can still reach inside."""

    def __init__(self, app: object, **config: object) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **config))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.socket.close()

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


def read_responses(sock: socket.socket, count: int) -> list[tuple[int, dict, bytes]]:
    """`count` HTTP/1.1 responses with a Content-Length, read off one connection: (status, headers, body)."""
    data, responses = b"", []
    while len(responses) < count:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            status_line, *lines = data[:head_end].decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
            end = head_end + 4 + int(headers.get("content-length", 0))
            if len(data) >= end:
                responses.append((int(status_line.split()[1]), headers, data[head_end + 4 : end]))
                data = data[end:]
                continue
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return responses


def request_bytes(method: str, path: str, body: bytes = b"", close: bool = False) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "")
    return head.encode() + b"\r\n" + body


def test_pipelined_requests_after_a_500_are_still_answered(tiny_artifact: Path) -> None:
    app = create_app(Settings(models_dir=tiny_artifact))
    with LiveServer(app) as server:
        app.state.schedulers["classifier"].fn = lambda texts: 1 / 0
        with server.connect() as sock:
            sock.sendall(
                request_bytes("POST", "/classify", b'{"text": "Antonio_Veciana"}')
                + request_bytes("POST", "/correct", b'{"text": "teh"}')
                + request_bytes("GET", "/health", close=True)
            )
            (failed, headers, body), corrected, health = read_responses(sock, 3)
    assert failed == 500 and headers["content-type"] == "application/json" and json.loads(body)["detail"]
    assert corrected[0] == 200 and json.loads(corrected[2])["results"]
    assert health[0] == 200


def test_stalled_bodies_get_408_and_hold_no_admission_slot(tiny_artifact: Path) -> None:
    settings = Settings(models_dir=tiny_artifact, max_concurrent_requests=2, body_timeout_s=1.5)
    with LiveServer(create_app(settings)) as server:
        stalled = [server.connect() for _ in range(6)]
        for sock in stalled:
            sock.sendall(request_bytes("POST", "/correct", b'{"text": "teh"}' + b" " * 100)[:-100])
        time.sleep(0.2)
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as http:
            assert http.post("/correct", json={"text": "teh"}).status_code == 200
            assert http.get("/ready").status_code == 200
        started = time.monotonic()
        for sock in stalled:
            [(status, headers, body)] = read_responses(sock, 1)
            assert status == 408 and headers["content-type"] == "application/json"
            assert json.loads(body)["detail"]
            sock.close()
        assert time.monotonic() - started < 3


def test_a_large_chunked_body_is_refused_while_it_is_read(tiny_artifact: Path) -> None:
    """No Content-Length to trust: the bytes are counted as they come, and 413 arrives long before 50 MB are sent."""
    chunk = b"x" * 65536
    app = create_app(Settings(models_dir=tiny_artifact, max_body_bytes=LIMIT))
    with LiveServer(app) as server, server.connect() as sock:
        sock.sendall(b"POST /correct HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
        sent = 0
        try:
            while sent < 50 * 1024 * 1024 and not select.select([sock], [], [], 0)[0]:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed while this was still sending
        [(status, headers, body)] = read_responses(sock, 1)
    assert status == 413 and headers["content-type"] == "application/json" and json.loads(body)["detail"]
    assert sent < 5 * 1024 * 1024  # what the sockets' buffers held before the answer came, not the 50 MB


class QuickH11(http_protocol.H11Protocol):
    timeout_s = 1.0


class QuickHttpTools(http_protocol.HttpToolsProtocol):
    timeout_s = 1.0


@pytest.mark.parametrize("protocol", [QuickH11, QuickHttpTools], ids=["h11", "httptools"])
def test_a_head_that_does_not_arrive_in_time_gets_408(tiny_artifact: Path, protocol: type) -> None:
    settings = Settings(models_dir=tiny_artifact, body_timeout_s=2.5)
    with LiveServer(create_app(settings), http=protocol) as server:
        silent, trickling, slow_body = server.connect(), server.connect(), server.connect()
        slow_body.sendall(request_bytes("POST", "/correct", b'{"text": "teh"}')[:-3])  # a head, then a stall
        started = time.monotonic()
        head = request_bytes("GET", "/health")
        for byte in head[:3]:  # a byte every 0.25 s: each one would restart an idle timer
            trickling.sendall(bytes([byte]))
            time.sleep(0.25)
        for sock in (silent, trickling):
            [(status, headers, body)] = read_responses(sock, 1)
            assert status == 408 and headers["content-type"] == "application/json" and json.loads(body)["detail"]
            assert sock.recv(1) == b""  # and closed
        assert time.monotonic() - started < 2.5
        # The one whose head came is not cut by the head's bound: its body's bound (2.5 s) answers it.
        [(status, _, body)] = read_responses(slow_body, 1)
        assert status == 408 and "body" in json.loads(body)["detail"]
        assert time.monotonic() - started >= 2.4
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}") as http:
            assert http.get("/health").status_code == 200  # a prompt client is served as ever
        for sock in (silent, trickling, slow_body):
            sock.close()


def test_past_the_connection_bound_the_refusal_is_json(tiny_artifact: Path) -> None:
    app = create_app(Settings(models_dir=tiny_artifact))
    with LiveServer(app, http=http_protocol.HttpToolsProtocol, limit_concurrency=3) as server:
        held = [server.connect() for _ in range(3)]
        time.sleep(0.2)  # accepted by the server's loop
        with server.connect() as sock:
            sock.sendall(request_bytes("GET", "/health", close=True))
            [(status, headers, body)] = read_responses(sock, 1)
        assert status == 503 and headers["content-type"] == "application/json" and json.loads(body)["detail"]
        assert headers["retry-after"] == "1"
        for sock in held:
            sock.close()
        time.sleep(0.2)
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}") as http:
            assert http.get("/health").status_code == 200


def test_sigterm_with_a_stalled_client_ends_within_the_shutdown_bound(tiny_artifact: Path) -> None:
    """uvicorn's --timeout-graceful-shutdown bounds the drain; the body bound here is longer than the test."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "CHARSERVE_MODELS_DIR": str(tiny_artifact), "CHARSERVE_BODY_TIMEOUT_S": "120",
           "CHARSERVE_MODELS": "[\"classifier\"]",  # the quickest to load: the stall comes before any model
           "PYTHONPATH": str(ROOT), "UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN": "1",
           "UVICORN_HTTP": "app.api.http_protocol:HttpToolsProtocol"}  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None and time.monotonic() < deadline, server.stderr.read().decode()[-2000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as stalled:
            stalled.sendall(request_bytes("POST", "/correct", b'{"text": "teh"}')[:-5])
            time.sleep(0.2)
            server.send_signal(signal.SIGTERM)
            started = time.monotonic()
            server.wait(timeout=10)
            assert time.monotonic() - started < 5
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
