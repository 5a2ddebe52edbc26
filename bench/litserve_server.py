"""Peer (c) of bench/serving.py: LitServe serving the same ONNX models with the same inference code, batching
requests with its own max_batch_size / batch_timeout.

    python -m bench.litserve_server --port 8000 --max-batch-size 64 --batch-timeout 0.002

Single-text requests only (`{"text": ...}`), which is what the benchmark sends.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import Any

import litserve as ls

from app.settings import Settings

MODELS = Path(__file__).resolve().parent.parent / "models"


class CharserveAPI(ls.LitAPI):
    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(api_path=f"/{'correct' if name == 'speller' else 'classify'}", **kwargs)
        self.name = name

    def setup(self, device: str) -> None:
        from app.classifier import Classifier
        from app.speller import Speller

        settings = Settings()
        self.model = (Speller if self.name == "speller" else Classifier)(MODELS / self.name, settings)
        self.model.warm_up()

    def decode_request(self, request: dict) -> str:
        return request["text"]

    def batch(self, inputs: list[str]) -> list[str]:
        return list(inputs)

    def predict(self, texts: list[str] | str) -> list[Any]:
        return self.model.batch(texts if isinstance(texts, list) else [texts])

    def unbatch(self, outputs: list[Any]) -> list[Any]:
        return outputs

    def encode_response(self, output: Any) -> dict:
        if isinstance(output, list):  # unbatched server: predict answered one text
            (output,) = output
        return {"results": [asdict(output)]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--batch-timeout", type=float, default=0.002)
    args = parser.parse_args(argv)
    apis = [
        CharserveAPI(name, max_batch_size=args.max_batch_size, batch_timeout=args.batch_timeout)
        for name in ("speller", "classifier")
    ]
    server = ls.LitServer(apis, accelerator="cpu", devices=1, workers_per_device=1, healthcheck_path="/ready")
    # No access log, as for our server in the benchmark: each line costs the same core the model runs on.
    server.run(port=args.port, generate_client_file=False, access_log=False)


if __name__ == "__main__":
    main()
