"""What one request's trip to the engine process and back costs, for the two transports charserve could use
between its HTTP workers and its engine (docs/design.md, "Serving across processes"):

- pyzmq: a DEALER socket per HTTP worker, one ROUTER in the engine, over ipc://, on asyncio (zmq.asyncio);
- multiprocessing: a Pipe per HTTP worker, read on the event loop when its descriptor is readable (its
  blocking writes could deadlock two processes sending large messages to each other: a baseline only);
- asyncio streams: a Unix socket per HTTP worker, length-prefixed pickles, buffered writes (asyncio's own).

The engine side answers at once (no model), so what is measured is the transport with pickling, both ways:
sequential round trips (latency) and 64 in flight (CPU per request). Payloads are a /correct request's and
answer's size.

    python -m bench.ipc_cost --requests 20000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import pickle
import tempfile
import time
from multiprocessing.connection import Connection

import zmq
import zmq.asyncio

REQUEST = ("submit", 1, "speller", ["Ths sentense has erors in it"], 30.0)
ANSWER = ("done", 1, [{"text": "This sentence has errors in it", "corrections": [{"start": 0, "end": 3}] * 3}])


def zmq_engine(address: str) -> None:
    async def serve() -> None:
        socket = zmq.asyncio.Context().socket(zmq.ROUTER)
        socket.bind(address)
        while True:
            identity, payload = await socket.recv_multipart()
            pickle.loads(payload)
            await socket.send_multipart([identity, pickle.dumps(ANSWER)])

    asyncio.run(serve())


def pipe_engine(conn: Connection) -> None:
    while True:
        pickle.loads(conn.recv_bytes())
        conn.send_bytes(pickle.dumps(ANSWER))


def stream_engine(path: str) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError):  # the client has gone
            while True:
                pickle.loads(await reader.readexactly(int.from_bytes(await reader.readexactly(4), "little")))
                payload = pickle.dumps(ANSWER)
                writer.write(len(payload).to_bytes(4, "little") + payload)

    async def serve() -> None:
        server = await asyncio.start_unix_server(answer, path)
        await server.serve_forever()

    asyncio.run(serve())


async def stream_client(path: str, requests: int, in_flight: int) -> float:
    reader, writer = await asyncio.open_unix_connection(path)

    async def send(b: bytes) -> None:
        writer.write(len(b).to_bytes(4, "little") + b)

    async def receive() -> bytes:
        return await reader.readexactly(int.from_bytes(await reader.readexactly(4), "little"))

    try:
        return await drive(send, receive, requests, in_flight)
    finally:
        writer.close()


async def zmq_client(address: str, requests: int, in_flight: int) -> float:
    socket = zmq.asyncio.Context().socket(zmq.DEALER)
    socket.connect(address)
    return await drive(lambda b: socket.send(b), socket.recv, requests, in_flight)


async def pipe_client(conn: Connection, requests: int, in_flight: int) -> float:
    loop = asyncio.get_running_loop()
    arrived: asyncio.Queue[bytes] = asyncio.Queue()
    loop.add_reader(conn.fileno(), lambda: arrived.put_nowait(conn.recv_bytes()))

    async def send(b: bytes) -> None:
        conn.send_bytes(b)

    try:
        return await drive(send, arrived.get, requests, in_flight)
    finally:
        loop.remove_reader(conn.fileno())


async def drive(send, receive, requests: int, in_flight: int) -> float:
    """CPU seconds of this process per request, `in_flight` requests outstanding at a time."""
    started = time.process_time()
    sent = received = 0
    while received < requests:
        while sent < requests and sent - received < in_flight:
            await send(pickle.dumps(REQUEST))
            sent += 1
        pickle.loads(await receive())
        received += 1
    return (time.process_time() - started) / requests


def measure(kind: str, requests: int) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    if kind == "zmq":
        address = f"ipc://{tempfile.mkdtemp()}/engine"
        engine = ctx.Process(target=zmq_engine, args=(address,), daemon=True)
        engine.start()
        client = lambda n, k: zmq_client(address, n, k)  # noqa: E731
    elif kind == "stream":
        path = f"{tempfile.mkdtemp()}/engine"
        engine = ctx.Process(target=stream_engine, args=(path,), daemon=True)
        engine.start()
        while not os.path.exists(path):
            time.sleep(0.01)
        client = lambda n, k: stream_client(path, n, k)  # noqa: E731
    else:
        here, there = ctx.Pipe()
        engine = ctx.Process(target=pipe_engine, args=(there,), daemon=True)
        engine.start()
        client = lambda n, k: pipe_client(here, n, k)  # noqa: E731
    try:
        asyncio.run(client(1000, 1))  # connect and warm up
        started = time.perf_counter()
        asyncio.run(client(requests, 1))
        round_trip = (time.perf_counter() - started) / requests
        cpu = asyncio.run(client(requests, 64))
    finally:
        engine.kill()
    return {"round_trip_us": round(round_trip * 1e6, 1), "client_cpu_us_per_request_64_in_flight": round(cpu * 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    print(f"cores {os.sched_getaffinity(0)}", flush=True)
    for kind in ("zmq", "pipe", "stream"):
        print(json.dumps({"transport": kind, **measure(kind, args.requests)}), flush=True)


if __name__ == "__main__":
    main()
