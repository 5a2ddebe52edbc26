"""`charserve serve`: the API in one process, or, with --workers N above 1, across processes: one engine process
holding the models and their schedulers (app/remote/engine.py), started once and ready before anything listens,
then N uvicorn HTTP workers on the same port, each reaching the engine through app/remote/client.py.

SIGTERM or SIGINT: each worker stops accepting and finishes its requests, then this stops the engine. A worker
that dies is replaced; an engine that dies ends the whole server, for whatever supervises it to start it again.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path

from app.settings import Settings

log = logging.getLogger("charserve")
ENGINE_START_S = 600  # loading and warming every model: well under a minute on a CPU core
ENGINE_STOP_S = 30
STARTUP_FAILED = 3  # uvicorn's exit code for an app that failed to start


class StartupFailed(RuntimeError):
    """The engine process could not load the models; the message says why, naming the broken file."""


class EngineProcess:
    def __init__(self, settings: Settings, path: str) -> None:
        from app.remote import engine

        context = multiprocessing.get_context("spawn")  # as uvicorn's workers: nothing inherited but the settings
        self.control, theirs = context.Pipe()
        self.process = context.Process(target=engine.run, args=(settings, path, theirs), name="charserve-engine")
        self.process.start()
        theirs.close()

    def wait_ready(self, timeout_s: float) -> None:
        if not self.control.poll(timeout_s):
            self.stop()
            raise StartupFailed(f"the engine process was not ready within {timeout_s:g} s")
        try:
            state, *detail = self.control.recv()
        except EOFError:  # it died before it could say why
            self.process.join(ENGINE_STOP_S)
            state, detail = "failed", [f"the engine process exited with code {self.process.exitcode}"]
        if state != "ready":
            self.process.join(ENGINE_STOP_S)
            raise StartupFailed(detail[0])

    def stop(self) -> None:
        self.control.close()  # the engine stops when its end of the pipe closes
        self.process.join(ENGINE_STOP_S)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def http_worker(host: str, port: int) -> None:
    """One HTTP worker process: uvicorn on a listening socket of its own, bound with SO_REUSEPORT so that the
    kernel spreads new connections over the workers evenly. On one socket shared by all, the worker that wakes
    first accepts every connection waiting (asyncio takes up to 100 at a time), and a client that opens its
    connections at once (a load generator, a proxy's pool) keeps them all on that worker."""
    import uvicorn

    from app.api.http_protocol import server_options

    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind((host, port))
    server = uvicorn.Server(uvicorn.Config("app.main:app", host=host, port=port, access_log=False, **server_options()))
    server.run(sockets=[listener])
    sys.exit(0 if server.started else STARTUP_FAILED)


def check_port_free(host: str, port: int) -> None:
    """SO_REUSEPORT would let the workers share the port with another server of this user: refuse instead.
    SO_REUSEADDR, as uvicorn's and the workers' own sockets: the connections a previous server on the port closed
    linger in TIME_WAIT for a minute, and a restart (a container's, say) must not wait for them; a socket
    listening there is still refused."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise StartupFailed(f"cannot listen on {host}:{port}: {exc.strerror}") from exc


def run_workers(host: str, port: int, count: int, engine: EngineProcess) -> int:
    """Start `count` HTTP workers and keep them running until SIGTERM or SIGINT (then each drains its requests)
    or until the engine dies. A worker that dies is replaced; one that fails to start stops the server."""
    context = multiprocessing.get_context("spawn")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    def start() -> multiprocessing.process.BaseProcess:
        process = context.Process(target=http_worker, args=(host, port), name="charserve-http")
        process.start()
        return process

    workers, outcome = [start() for _ in range(count)], 0
    while not stop.wait(0.2):
        if not engine.process.is_alive():
            log.error("the engine process exited with code %s; stopping the server", engine.process.exitcode)
            outcome = 1
            break
        for i, worker in enumerate(workers):
            if not worker.is_alive():
                if worker.exitcode == STARTUP_FAILED:
                    log.error("an HTTP worker failed to start; stopping the server")
                    stop.set()
                    outcome = 1
                else:
                    log.warning("HTTP worker [%s] exited with code %s; starting another", worker.pid, worker.exitcode)
                    workers[i] = start()
    for worker in workers:
        if worker.is_alive():
            os.kill(worker.pid, signal.SIGTERM)  # uvicorn: stop accepting, finish the requests, then exit
    for worker in workers:
        worker.join()
    return outcome


def serve(host: str, port: int, workers: int, settings: Settings) -> int:
    """Run the API until a signal ends it; 0, or 1 if the engine process died."""
    import uvicorn

    from app.api.http_protocol import server_options

    # The app logs each request as one JSON line, so uvicorn's own access line is off; the same bounds on
    # shutdown, connections and a request head's wait as the images (server_options).
    if workers < 1:
        raise StartupFailed(f"--workers {workers}: at least one HTTP worker is needed")
    if workers == 1:
        uvicorn.run("app.main:app", host=host, port=port, access_log=False, **server_options())
        return 0
    check_port_free(host, port)
    with tempfile.TemporaryDirectory(prefix="charserve-") as folder:  # only this user may enter it
        metrics = Path(folder) / "metrics"
        metrics.mkdir()
        # Read by every process this one starts: app/metrics.py then writes its values there.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
        engine = EngineProcess(settings, str(Path(folder) / "engine.sock"))
        try:
            engine.wait_ready(ENGINE_START_S)
            os.environ["CHARSERVE_ENGINE_ADDRESS"] = str(Path(folder) / "engine.sock")
            return run_workers(host, port, workers, engine)
        finally:
            engine.stop()
