"""The CPU image, for real: build it, run it, call it, check its user, and stop it with SIGTERM mid-request.

Runs where a Docker engine answers (`.ci/run` starts one with ../shared/tools/docker-local.sh);
skips with the reason elsewhere.
"""

import json
import random
import string
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from bench.container import build, docker, engine_available, start, wait_ready

TAG, NAME, PORT = "charserve:test", "charserve-test", 18123

pytestmark = pytest.mark.skipif(
    not engine_available(), reason="no Docker engine answers `docker info` (../shared/tools/docker-local.sh starts one)"
)


@pytest.fixture(scope="module")
def container() -> Iterator[str]:
    build(TAG)
    started = start(TAG, NAME, PORT)
    try:
        wait_ready(PORT, started)
        yield NAME
    finally:
        docker("rm", "-f", NAME, check=False)


@pytest.fixture(scope="module")
def client(container: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{PORT}", timeout=60) as c:
        yield c


def test_every_endpoint_answers(client: httpx.Client) -> None:
    ready = client.get("/ready").json()
    assert {m["name"] for m in ready["models"]} == {"speller", "classifier", "poet"}
    fixed = client.post("/correct", json={"text": "Ths sentense has erors"}).json()
    assert fixed["results"][0]["text"] == "This sentence has errors"
    typed = client.post("/classify", json={"text": "Antonio_Veciana"}).json()
    assert typed["results"][0]["label"] == "Person"
    assert client.post("/classify", json={"text": ""}).status_code == 422
    poem = client.post("/poem", json={"form": "wuyan_jueju", "acrostic": "春夏秋冬"}).json()
    assert [len(line) for line in poem["lines"]] == [5, 5, 5, 5]
    assert "".join(line[0] for line in poem["lines"]) == "春夏秋冬"
    assert client.post("/poem", json={"form": "sonnet"}).status_code == 422


def test_the_server_process_is_not_root(container: str) -> None:
    status = docker("exec", container, "cat", "/proc/1/status").stdout  # PID 1 is the server itself
    real, effective, *_ = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert real != "0" and effective != "0"
    command = docker("exec", container, "cat", "/proc/1/cmdline").stdout.split("\0")
    assert command[1:3] == ["/opt/venv/bin/charserve", "serve"]


def test_no_torch_in_the_image(container: str) -> None:
    probe = docker("exec", container, "python", "-c", "import importlib.util as u; print(u.find_spec('torch'))")
    assert probe.stdout.strip() == "None"


def test_each_request_leaves_one_access_line_in_json(container: str, client: httpx.Client) -> None:
    """The app's structured line, not uvicorn's text one beside it."""
    path = f"/no-such-page-{random.Random().randrange(10**9)}"
    assert client.get(path).status_code == 404
    logs = docker("logs", container)  # uvicorn writes its access lines to stdout, the app to stderr
    lines = [line for line in (logs.stdout + logs.stderr).splitlines() if path in line]
    assert len(lines) == 1, lines
    logged = json.loads(lines[0].split(" INFO ", 1)[1])
    assert logged["path"] == path and logged["status"] == 404


def test_sigterm_finishes_the_request_in_flight_then_exits(container: str, client: httpx.Client) -> None:
    # Thousands of distinct made-up words: seconds of decoding, long enough to stop the container mid-request.
    rng = random.Random(0)
    texts = [" ".join("".join(rng.choices(string.ascii_lowercase, k=9)) for _ in range(40)) for _ in range(40)]
    answer: dict = {}

    def slow_request() -> None:
        try:
            answer["response"] = client.post("/correct", json={"texts": texts})
        except httpx.HTTPError as exc:
            answer["error"] = exc

    worker = threading.Thread(target=slow_request)
    worker.start()
    time.sleep(1.0)  # let the request reach the model: SIGTERM must land while it is being decoded
    docker("kill", "--signal", "SIGTERM", container)
    worker.join(timeout=120)
    assert "error" not in answer, answer.get("error")
    assert answer["response"].status_code == 200
    assert len(answer["response"].json()["results"]) == len(texts)
    status = docker("wait", container, timeout=60).stdout.strip()
    assert status == "0"
    logs = docker("logs", container).stderr
    assert "Waiting for connections to close" in logs or "Shutting down" in logs


def processes_started_by_pid_1(container: str) -> list[str]:
    """Their command lines: multiprocessing's, as `charserve serve --workers` starts them."""
    ps = (
        "import os; print(*(open(f'/proc/{p}/cmdline').read().replace(chr(0), ' ') for p in os.listdir('/proc') "
        "if p.isdigit() and open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[1] == '1'), sep=chr(10))"
    )
    return docker("exec", container, "python", "-c", ps).stdout.splitlines()


def test_charserve_workers_serves_across_processes_and_stops_on_sigterm(container: str) -> None:
    """The image's command is `charserve serve`, so CHARSERVE_WORKERS applies: an engine process and N HTTP
    workers under PID 1, all gone after SIGTERM, with exit code 0."""
    name, port = f"{NAME}-workers", PORT + 1
    started = start(TAG, name, port, "CHARSERVE_WORKERS=2", "CHARSERVE_MODELS=[\"classifier\"]")
    try:
        wait_ready(port, started)
        typed = httpx.post(f"http://127.0.0.1:{port}/classify", json={"text": "Antonio_Veciana"}, timeout=60).json()
        assert typed["results"][0]["label"] == "Person"
        spawned = [line for line in processes_started_by_pid_1(name) if "spawn_main" in line]
        assert len(spawned) == 3  # the engine and two HTTP workers (beside multiprocessing's resource tracker)
        docker("kill", "--signal", "SIGTERM", name)
        assert docker("wait", name, timeout=60).stdout.strip() == "0"
    finally:
        docker("rm", "-f", name, check=False)
