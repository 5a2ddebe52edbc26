"""`charserve serve`: the API in one process, or, with --workers N above 1, across processes: one engine process
holding the models and their schedulers (app/remote/engine.py), started once and ready before anything listens,
then N uvicorn HTTP workers sharing the port (uvicorn's own supervisor, which replaces a worker that dies),
each reaching the engine through app/remote/client.py.

SIGTERM or SIGINT: uvicorn's supervisor has each worker stop accepting and finish its requests, then this stops
the engine. An engine that dies ends the whole server, for whatever supervises it to start it again.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import tempfile
import threading
from pathlib import Path

from app.settings import Settings

log = logging.getLogger("charserve")
ENGINE_START_S = 600  # loading and warming every model: well under a minute on a CPU core
ENGINE_STOP_S = 30


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
        self.stopping = False

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

    def end_server_if_it_dies(self) -> None:
        """In a thread: an engine that exits on its own leaves the workers nothing to serve: stop them all."""
        self.process.join()
        if not self.stopping:
            log.error("the engine process exited with code %s; stopping the server", self.process.exitcode)
            os.kill(os.getpid(), signal.SIGTERM)

    def stop(self) -> None:
        self.stopping = True
        self.control.close()  # the engine stops when its end of the pipe closes
        self.process.join(ENGINE_STOP_S)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def serve(host: str, port: int, workers: int, settings: Settings) -> int:
    """Run the API until a signal ends it; 0, or 1 if the engine process died."""
    import uvicorn

    # As `make serve`: the app logs each request as one JSON line, so uvicorn's own access line is off.
    if workers == 1:
        uvicorn.run("app.main:app", host=host, port=port, access_log=False)
        return 0
    with tempfile.TemporaryDirectory(prefix="charserve-") as folder:  # only this user may enter it
        metrics = Path(folder) / "metrics"
        metrics.mkdir()
        # Read by every process this one starts: app/metrics.py then writes its values there.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
        engine = EngineProcess(settings, str(Path(folder) / "engine.sock"))
        engine.wait_ready(ENGINE_START_S)
        os.environ["CHARSERVE_ENGINE_ADDRESS"] = str(Path(folder) / "engine.sock")
        threading.Thread(target=engine.end_server_if_it_dies, name="engine-watch", daemon=True).start()
        try:
            uvicorn.run("app.main:app", host=host, port=port, access_log=False, workers=workers)
        finally:
            died = engine.process.exitcode is not None and not engine.stopping
            engine.stop()
    return 1 if died else 0
