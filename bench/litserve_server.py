"""Peer (c) of bench/serving.py: LitServe serving the same ONNX models with the same inference code, batching
requests with its own max_batch_size / batch_timeout.

    python -m bench.litserve_server --port 8000 --max-batch-size 64 --batch-timeout 0.002 [--speller-loop continuous]

With `--speller-loop continuous` the speller runs under LitServe's own ContinuousBatchingLoop instead: each
unknown word of a request joins the running beam search (the same app/ step model as ours) at LitServe's
next step. That loop streams its answers, so the response is a chunked stream of the same JSON. Its
design, read in litserve 0.2.19's source: a step that answers no request is followed by a 10 ms sleep,
and each answer goes to the HTTP process through a queue; both are part of what the row measures.

Single-text requests only (`{"text": ...}`), which is what the benchmark sends.
"""

from __future__ import annotations

import argparse
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

import litserve as ls
import numpy as np
from litserve.loops.continuous_batching_loop import ContinuousBatchingLoop, Output
from litserve.utils import LitAPIStatus

from app.settings import Settings

MODELS = Path(__file__).resolve().parent.parent / "models"


class CharserveAPI(ls.LitAPI):
    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(api_path=f"/{'correct' if name == 'speller' else 'classify'}", **kwargs)
        self.name = name

    def setup(self, device: str) -> None:
        from app.adapters.classifier import Classifier
        from app.adapters.speller.model import Speller

        settings = Settings()
        self.model = (Speller if self.name == "speller" else Classifier)(MODELS / self.name, settings)
        self.model.warm_up()

    def decode_request(self, request: dict) -> str:
        return request["text"]

    def batch(self, inputs: list[str]) -> list[str]:
        return list(inputs)

    def predict(self, texts: list[str] | str) -> list[Any]:
        # The service's own answer: the speller's corrections as its server-wide policy decides them.
        answer = self.model.correct_texts if self.name == "speller" else self.model.batch
        return answer(texts if isinstance(texts, list) else [texts])

    def unbatch(self, outputs: list[Any]) -> list[Any]:
        return outputs

    def encode_response(self, output: Any) -> dict:
        if isinstance(output, list):  # unbatched server: predict answered one text
            (output,) = output
        return {"results": [asdict(output)]}


class ContinuousSpellerAPI(ls.LitAPI):
    """The speller under LitServe's continuous-batching loop. LitServe calls add_request from its event loop
    and step from a worker thread, so the shared state is guarded by a lock."""

    def __init__(self, max_batch_size: int) -> None:
        super().__init__(api_path="/correct", stream=True, max_batch_size=max_batch_size,
                         loop=ContinuousBatchingLoop())  # fmt: skip

    def setup(self, device: str) -> None:
        from app.adapters.speller.model import Speller

        self.model = Speller(MODELS / "speller", Settings())
        self.model.warm_up()
        self.lock = threading.Lock()
        self.requests: dict[str, dict] = {}  # uid → its text, tokens, the corrections so far, the words still out
        self.waiting: list[tuple[str, str]] = []  # (uid, word) not yet in the batch
        self.live: list[tuple[str, str]] = []  # (uid, word) of each item of self.rows
        self.ready: list[str] = []  # requests whose every word is answered
        self.rows: Any = None

    def add_request(self, uid: str, request: dict) -> None:
        found, unknown = self.model.unknown_words([request["text"]])
        with self.lock:
            self.requests[uid] = {"text": request["text"], "found": found, "fixed": {}, "left": len(unknown)}
            self.waiting += [(uid, word) for word in unknown]
            if not unknown:
                self.ready.append(uid)

    def has_capacity(self) -> bool:
        with self.lock:
            return len(self.live) + len(self.waiting) < self.max_batch_size

    def has_active_requests(self) -> bool:
        with self.lock:
            return bool(self.requests)

    def step(self, prev_outputs: Any) -> list[Output]:
        with self.lock:
            joining, self.waiting = self.waiting, []
        if joining:
            new = self.model.rows([word for _, word in joining])
            self.rows = new if not self.live else type(new).concat([self.rows, new])
            self.live += joining
        finished_words: list[tuple[tuple[str, str], str]] = []
        if self.live:
            _, finished = self.model.step(self.rows)
            if finished.any():
                done = [self.live[i] for i in np.flatnonzero(finished)]
                answers = self.model.answers(self.rows, finished, [word for _, word in done])
                finished_words = list(zip(done, answers, strict=True))
                self.rows = self.rows.take(~finished)
                self.live = [item for item, f in zip(self.live, finished, strict=True) if not f]
        outputs = []
        with self.lock:
            for (uid, word), answer in finished_words:
                request = self.requests[uid]
                request["fixed"][word] = answer
                request["left"] -= 1
                if request["left"] == 0:
                    self.ready.append(uid)
            ready, self.ready = self.ready, []
            answered = [(uid, self.requests.pop(uid)) for uid in ready]
        for uid, r in answered:
            [result] = self.model.apply([r["text"]], r["found"], r["fixed"])
            outputs += [Output(uid, result, LitAPIStatus.OK), Output(uid, None, LitAPIStatus.FINISH_STREAMING)]
        return outputs

    def encode_response(self, output: Any) -> dict:
        return {"results": [asdict(output)]} if output is not None else {}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--batch-timeout", type=float, default=0.002)
    parser.add_argument("--speller-loop", choices=["batch", "continuous"], default="batch")
    args = parser.parse_args(argv)
    apis: list[ls.LitAPI] = [
        CharserveAPI(name, max_batch_size=args.max_batch_size, batch_timeout=args.batch_timeout)
        for name in ("speller", "classifier")
    ]
    if args.speller_loop == "continuous":
        apis[0] = ContinuousSpellerAPI(max_batch_size=args.max_batch_size)
    server = ls.LitServer(apis, accelerator="cpu", devices=1, workers_per_device=1, healthcheck_path="/ready")
    # No access log, as for our server in the benchmark: each line costs the same core the model runs on.
    server.run(port=args.port, generate_client_file=False, access_log=False)


if __name__ == "__main__":
    main()
