"""Serving across processes (`charserve serve --workers N`): N HTTP worker processes and one engine process.

- `wire.py`: the messages between them and how they travel (length-prefixed pickles on a Unix socket).
- `engine.py`: the engine process: the models, one scheduler per model, batching the requests of every worker.
- `client.py`: what an HTTP worker holds instead: a `RemoteScheduler` per model over one connection.
- app/serve.py starts the engine once, then the HTTP workers, and stops the engine after they have drained.
"""
