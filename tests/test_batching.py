"""The dynamic batcher: requests share model calls, overload and deadlines are answered, failures stay local."""

import asyncio
import threading
import time

import anyio
import pytest

from app.engine.dynamic import DeadlineExceeded, DynamicBatcher, Overloaded


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn's loop


class Recorder:
    """A model that upper-cases its items, remembering every batch; 'boom' makes a batch fail."""

    def __init__(self, delay: float = 0.0) -> None:
        self.batches: list[list[str]] = []
        self.delay = delay
        self.release = threading.Event()
        self.release.set()

    def __call__(self, items: list[str]) -> list[str]:
        self.release.wait(5)
        self.batches.append(list(items))
        time.sleep(self.delay)
        if "boom" in items:
            raise ValueError("the model failed")
        return [item.upper() for item in items]


def batcher(fn: Recorder, **overrides: float) -> DynamicBatcher:
    options = {"max_batch": 64, "max_wait_s": 0.05, "max_queue": 100, "deadline_s": 5.0}
    options.update(overrides)
    return DynamicBatcher("test", fn, limiter=anyio.CapacityLimiter(1), **options)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_concurrent_requests_share_one_call_and_get_their_own_answers() -> None:
    model = Recorder()
    scheduler = batcher(model)
    await scheduler.start()
    try:
        answers = await asyncio.gather(*(scheduler.submit([f"a{i}", f"b{i}"]) for i in range(5)))
    finally:
        await scheduler.stop()
    assert answers == [[f"A{i}", f"B{i}"] for i in range(5)]
    assert len(model.batches) == 1 and len(model.batches[0]) == 10


@pytest.mark.anyio
async def test_a_batch_never_grows_past_its_maximum() -> None:
    model = Recorder()
    scheduler = batcher(model, max_batch=4)
    await scheduler.start()
    try:
        await asyncio.gather(*(scheduler.submit([str(i)]) for i in range(10)))
    finally:
        await scheduler.stop()
    assert [len(b) for b in model.batches] == [4, 4, 2]


@pytest.mark.anyio
async def test_batch_of_one_serves_requests_one_by_one() -> None:
    model = Recorder()
    scheduler = batcher(model, max_batch=1, max_wait_s=0)
    await scheduler.start()
    try:
        await asyncio.gather(*(scheduler.submit([str(i)]) for i in range(3)))
    finally:
        await scheduler.stop()
    assert [len(b) for b in model.batches] == [1, 1, 1]


@pytest.mark.anyio
async def test_a_full_queue_refuses_at_once() -> None:
    model = Recorder()
    model.release.clear()  # the model is busy: nothing leaves the queue
    scheduler = batcher(model, max_batch=2, max_queue=4)
    await scheduler.start()
    try:
        waiting = [asyncio.create_task(scheduler.submit(["x", "y"]))]
        await asyncio.sleep(0.2)  # the first pair is in the (stuck) model
        waiting += [asyncio.create_task(scheduler.submit(["x", "y"])) for _ in range(2)]
        await asyncio.sleep(0.01)  # two more pairs fill the queue
        started = time.perf_counter()
        with pytest.raises(Overloaded, match="limit 4"):
            await scheduler.submit(["z"])
        assert time.perf_counter() - started < 0.05
        model.release.set()
        assert await asyncio.gather(*waiting) == [["X", "Y"]] * 3
    finally:
        model.release.set()
        await scheduler.stop()


@pytest.mark.anyio
async def test_a_request_past_its_deadline_is_answered_and_never_computed() -> None:
    model = Recorder(delay=0.3)
    scheduler = batcher(model, max_batch=1, max_wait_s=0, deadline_s=0.1)
    await scheduler.start()
    try:
        first = asyncio.create_task(scheduler.submit(["slow"]))
        await asyncio.sleep(0.01)
        with pytest.raises(DeadlineExceeded):
            await scheduler.submit(["late"])  # waits behind "slow" past its deadline
        with pytest.raises(DeadlineExceeded):
            await first  # "slow" itself takes longer than the deadline
        await asyncio.sleep(0.4)
    finally:
        await scheduler.stop()
    assert ["late"] not in model.batches  # dropped before its turn came


@pytest.mark.anyio
async def test_a_cancelled_request_is_dropped_from_the_queue() -> None:
    model = Recorder()
    model.release.clear()
    scheduler = batcher(model, max_batch=1, max_wait_s=0)
    await scheduler.start()
    try:
        busy = asyncio.create_task(scheduler.submit(["busy"]))
        await asyncio.sleep(0.05)
        gone = asyncio.create_task(scheduler.submit(["gone"]))  # a client that disconnects
        await asyncio.sleep(0.05)
        gone.cancel()
        model.release.set()
        assert await busy == ["BUSY"]
        assert await scheduler.submit(["next"]) == ["NEXT"]
    finally:
        model.release.set()
        await scheduler.stop()
    assert ["gone"] not in model.batches


@pytest.mark.anyio
async def test_a_failing_batch_fails_only_its_own_requests() -> None:
    model = Recorder()
    scheduler = batcher(model, max_batch=1, max_wait_s=0)
    await scheduler.start()
    try:
        results = await asyncio.gather(
            scheduler.submit(["ok"]), scheduler.submit(["boom"]), scheduler.submit(["fine"]), return_exceptions=True
        )
    finally:
        await scheduler.stop()
    assert results[0] == ["OK"] and results[2] == ["FINE"]
    assert isinstance(results[1], ValueError)
