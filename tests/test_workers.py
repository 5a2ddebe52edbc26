"""Serving across processes (`charserve serve --workers 2`): real servers on 127.0.0.1, answering as one process
does, batching the requests of both HTTP workers together, stopping every process on SIGTERM; and the engine's
refusals carried back to a worker as the same HTTP answers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app.catalog import ModelRegistry
from app.engine.errors import DeadlineExceeded, InvalidInput, Overloaded
from app.main import create_app
from app.remote import client as remote
from app.remote.engine import Engine
from app.settings import Settings
from bench.workers import markdown, session_cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 2
PER_WORKER = 4  # requests each HTTP worker lets in at once: a batch of more holds both workers' requests
WAIT_MS = 150  # how long a classifier batch waits for more names: long enough for every worker's to arrive
CLASSIFIER_ONLY = {"CHARSERVE_MODELS": '["classifier"]'}  # quicker to start, for the tests of the processes' lives
POEM = {"form": "wuyan_jueju", "acrostic": "春風"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    log: Path

    def engine_pid(self) -> int:
        return int(re.search(r"engine process \[(\d+)\] ready", self.log.read_text())[1])

    def processes(self) -> set[int]:
        """Every live process of the server (its own session)."""
        return set(session_cpu_seconds(self.process.pid))


def start(models: Path, log: Path, **env: str) -> subprocess.Popen:
    settings = {"CHARSERVE_MODELS_DIR": str(models), "CHARSERVE_ACCESS_LOG": "false",
                "CHARSERVE_INTRA_OP_THREADS": "1", "PYTHONPATH": str(ROOT), **env}  # fmt: skip
    command = [sys.executable, "-m", "app.cli", "serve", "--workers", str(WORKERS), *env.pop("ARGS", "").split()]
    return subprocess.Popen(
        command, cwd=ROOT, env={**os.environ, **settings}, stdout=log.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def serve(models: Path, log: Path, **env: str) -> Server:
    port = free_port()
    process = start(models, log, ARGS=f"--port {port}", **env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return Server(process, url, log)
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError(f"the server did not start:\n{log.read_text()}")


def stop(server: Server) -> None:
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()


@pytest.fixture(scope="module")
def server(tiny_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("workers") / "server.log"
    env = {"CHARSERVE_MAX_CONCURRENT_REQUESTS": str(PER_WORKER), "CHARSERVE_BATCH_MAX_WAIT_MS": str(WAIT_MS)}
    running = serve(tiny_artifact, log, **env)
    yield running
    stop(running)


@pytest.fixture(scope="module")
def one_process(tiny_artifact: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(models_dir=tiny_artifact))) as c:
        yield c


REQUESTS = [
    ("/correct", {"texts": ["Ths sentense has erors", "speling is hard"]}),
    ("/classify", {"texts": ["Anna_Smith", "Rossi_River", "Conus_alba"]}),
    ("/poem", POEM),
    ("/poem", {"form": "free", "max_chars": 20}),
    ("/poem", {"form": "wuyan_jueju", "acrostic": "ABC"}),  # 422, refused by the engine's poet
    ("/correct", {"texts": ["ok \ud800 no"]}),  # 422: not valid Unicode, refused by the engine's speller
]


@pytest.mark.parametrize(("path", "body"), REQUESTS)
def test_two_workers_answer_as_one_process_does(server: Server, one_process: TestClient, path: str, body: dict) -> None:
    raw = {"content": json.dumps(body), "headers": {"content-type": "application/json"}}  # \ud800 escaped
    expected = one_process.post(path, **raw)
    got = httpx.post(server.url + path, timeout=30, **raw)
    assert (got.status_code, got.json()) == (expected.status_code, expected.json())


def test_a_streamed_poem_is_the_poem(server: Server, one_process: TestClient) -> None:
    with httpx.stream("POST", f"{server.url}/poem", json={**POEM, "stream": True}, timeout=30) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [block for block in response.read().decode().split("\n\n") if block]
    *chars, last = [(e.split("\n")[0][7:], json.loads(e.split("\n")[1][6:])) for e in events]
    assert last == ("poem", one_process.post("/poem", json=POEM).json())
    assert "".join(c["char"] for _, c in chars) == last[1]["poem"]


def test_ready_shows_the_engines_models(server: Server) -> None:
    ready = httpx.get(f"{server.url}/ready").json()
    assert ready["status"] == "ready"
    assert [m["name"] for m in ready["models"]] == ["speller", "classifier", "poet"]


def metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def test_requests_of_both_workers_share_one_batch(server: Server) -> None:
    """Each worker lets in PER_WORKER requests at once; a batch that answered more held both workers' requests.
    The kernel hands each connection to one worker or the other: a few bursts make a shared one all but certain."""

    async def burst() -> None:
        limits = httpx.Limits(max_connections=6 * PER_WORKER)  # each request on its own connection
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as client:
            await asyncio.gather(*(client.post("/classify", json={"text": f"Anna_Smith_{i}"}) for i in range(24)))

    for _ in range(5):
        asyncio.run(burst())
        text = httpx.get(f"{server.url}/metrics").text
        bucket = f'charserve_batch_requests_bucket{{le="{PER_WORKER}.0",model="classifier"}}'
        assert bucket in text  # the engine's histogram, shown by a worker
        small = metric(text, bucket)
        if metric(text, 'charserve_batch_requests_count{model="classifier"}') > small:
            break
    else:
        pytest.fail(f"no classifier batch held more than one worker's {PER_WORKER} requests:\n{text}")
    served = metric(text, 'charserve_requests_total{endpoint="/classify",status="200"}')
    assert served > PER_WORKER  # counted by both workers, shown by either


def wait_until_gone(server: Server, timeout_s: float = 10) -> set[int]:
    deadline = time.monotonic() + timeout_s
    while server.processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    return server.processes()


def test_sigterm_drains_and_stops_every_process(tiny_artifact: Path, tmp_path: Path) -> None:
    """As Ctrl-C does: the signal reaches every process; the request in flight is still answered."""
    server = serve(tiny_artifact, tmp_path / "server.log", CHARSERVE_BATCH_MAX_WAIT_MS="500", **CLASSIFIER_ONLY)
    try:
        assert len(server.processes()) >= 1 + WORKERS + 1  # the supervisor, the workers, the engine
        with ThreadPoolExecutor(1) as pool:
            # The classifier's batch waits 500 ms for more names: the request is in flight at the signal.
            pending = pool.submit(httpx.post, f"{server.url}/classify", json={"text": "Anna_Smith"}, timeout=30)
            time.sleep(0.2)
            os.killpg(server.process.pid, signal.SIGTERM)
            assert pending.result().status_code == 200
        assert server.process.wait(timeout=30) == 0
        assert not wait_until_gone(server)
    finally:
        stop(server)


def test_a_worker_that_dies_is_replaced_and_an_engine_that_dies_ends_the_server(
    tiny_artifact: Path, tmp_path: Path
) -> None:
    server = serve(tiny_artifact, tmp_path / "server.log", **CLASSIFIER_ONLY)
    started = re.compile(r"Started server process \[(\d+)\]")
    try:
        os.kill(int(started.findall(server.log.read_text())[0]), signal.SIGKILL)
        deadline = time.monotonic() + 60
        while len(started.findall(server.log.read_text())) <= WORKERS and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(started.findall(server.log.read_text())) == WORKERS + 1
        assert all(httpx.get(f"{server.url}/ready").status_code == 200 for _ in range(8))
        os.kill(server.engine_pid(), signal.SIGKILL)
        assert server.process.wait(timeout=30) == 1  # for whatever supervises it to start it again
        assert not wait_until_gone(server)
    finally:
        stop(server)


def test_a_port_in_use_is_refused_before_anything_loads(tmp_path: Path) -> None:
    """The workers' SO_REUSEPORT would otherwise share the port with whatever holds it."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        process = start(tmp_path / "no-models", tmp_path / "log", ARGS=f"--port {taken.getsockname()[1]}")
        assert process.wait(timeout=60) == 1
    assert "cannot listen on 127.0.0.1" in (tmp_path / "log").read_text()


def test_a_port_that_a_stopped_server_answered_on_is_free_at_once() -> None:
    """The server closed its connections, so they wait in TIME_WAIT on its port; a restart still listens there."""
    from app.serve import check_port_free

    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = listener.accept()
            accepted.close()  # the server's side closes first: its end of the connection is now in TIME_WAIT
            client.recv(1)
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))  # what TIME_WAIT does to a socket without SO_REUSEADDR
    check_port_free("127.0.0.1", port)


def test_a_broken_artifact_stops_start_up_naming_the_file(artifact_copy: Path, tmp_path: Path) -> None:
    graph = next((artifact_copy / "classifier").glob("*.onnx"))
    graph.write_bytes(graph.read_bytes()[:-10])
    log = tmp_path / "server.log"
    process = start(artifact_copy, log, ARGS=f"--port {free_port()}")
    assert process.wait(timeout=120) == 1
    assert str(graph) in log.read_text()


# The engine's refusals, carried back over a real connection to an in-process engine with stand-in schedulers.


@dataclass
class StandIn:
    name: str
    version: str = "0"
    provider: str = "test"
    refusal: Exception | None = None
    seconds: float = 0.01
    cancelled: int = 0

    async def submit(self, items: object) -> object:
        if self.refusal:
            raise self.refusal
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return [f"{self.name}:{item}" for item in items]  # type: ignore[attr-defined]

    def plan(self, form: str) -> str:
        if form != "ok":
            raise ValueError(f"no form {form!r}")
        return form


async def engine_and_client(tmp_path: Path, models: list[StandIn]) -> tuple[asyncio.Server, remote.EngineClient]:
    registry = ModelRegistry(models={m.name: m for m in models}, ready=True)  # type: ignore[misc]
    server = await asyncio.start_unix_server(Engine(registry, registry.models).connection, tmp_path / "e.sock")
    return server, await remote.EngineClient.connect(str(tmp_path / "e.sock"))


@pytest.mark.parametrize(
    ("refusal", "raised"),
    [(Overloaded("full"), Overloaded), (DeadlineExceeded("late"), DeadlineExceeded),
     (InvalidInput("text 0 is not valid Unicode"), InvalidInput), (RuntimeError("bug"), remote.wire.EngineError)],
)  # fmt: skip
def test_the_engines_refusals_are_raised_again_in_the_worker(
    tmp_path: Path, refusal: Exception, raised: type[Exception]
) -> None:
    async def scenario() -> None:
        server, client = await engine_and_client(tmp_path, [StandIn("a"), StandIn("b", refusal=refusal)])
        try:
            assert await remote.RemoteScheduler(client, "a", 5).submit(["x", "y"]) == ["a:x", "a:y"]
            with pytest.raises(raised, match=str(refusal)):
                await remote.RemoteScheduler(client, "b", 5).submit(["x"])
            with pytest.raises(InvalidInput, match="no form 'bad'"):  # the plan, made by the engine's model
                await remote.RemoteScheduler(client, "a", 5).submit(remote.RemoteModel("a", "0", "t").plan(form="bad"))
        finally:
            await client.close()
            server.close()

    asyncio.run(scenario())


def test_a_request_that_leaves_is_cancelled_in_the_engine(tmp_path: Path) -> None:
    """A client that goes away (its request task cancelled in the worker): the engine stops working on it."""

    async def scenario() -> None:
        slow = StandIn("a", seconds=30)
        server, client = await engine_and_client(tmp_path, [slow])
        request = asyncio.create_task(remote.RemoteScheduler(client, "a", 60).submit(["x"]))
        await asyncio.sleep(0.2)
        request.cancel()
        deadline = time.monotonic() + 5
        while not slow.cancelled and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert slow.cancelled == 1 and not client.calls
        await client.close()
        server.close()

    asyncio.run(scenario())


def test_when_the_engine_goes_the_worker_is_not_ready_and_says_so(tmp_path: Path) -> None:
    async def dies_at_the_first_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await remote.wire.read(reader)
        remote.wire.write(writer, ("hello", 0, [remote.wire.ModelInfo("a", "0", "test")]))
        await remote.wire.read(reader)
        writer.close()

    async def scenario() -> None:
        server = await asyncio.start_unix_server(dies_at_the_first_request, tmp_path / "e.sock")
        client = await remote.EngineClient.connect(str(tmp_path / "e.sock"))
        registry, scheduler = remote.RemoteRegistry(client), remote.RemoteScheduler(client, "a", 5)
        assert registry.ready and list(registry.models) == ["a"]
        with pytest.raises(remote.EngineGone, match="engine process has gone"):  # 503
            await scheduler.submit(["x"])
        assert not registry.ready  # /ready: 503
        with pytest.raises(remote.EngineGone):
            await scheduler.submit(["x"])
        await client.close()
        server.close()

    asyncio.run(scenario())


def test_bench_workers_counts_each_server_process_and_renders_a_row() -> None:
    assert os.getpid() in session_cpu_seconds(os.getsid(0))
    row = {"server_cores": "0,1", "client_cores": "0,1", "workers": 2, "endpoint": "/classify", "ok_per_s": 500.0,
           "ok_per_s_rounds": [480.0, 500.0, 510.0], "p50_ms": 100.0, "p99_ms": 200.0, "server_cores_used": 1.8,
           "process_cores_used": [1.0, 0.4, 0.4], "ok_per_server_cpu_s": 277.8, "client_cores_used": 0.2}  # fmt: skip
    table = markdown({"measured": "now", "command": "c", "repeats": 3, "rows": [row]})
    assert (
        "| 2 | /classify | 500.0 (480.0, 500.0, 510.0) | 100.0 | 200.0 | 1.8 (1.0, 0.4, 0.4) | 277.8 | 0.2 |" in table
    )
