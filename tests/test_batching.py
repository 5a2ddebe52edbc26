"""The schedulers: requests share model calls, overload and deadlines are answered, failures stay local, and
large requests share the workers with small ones."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import anyio
import numpy as np
import pytest

from app.engine.continuous import ContinuousBatcher
from app.engine.dynamic import DeadlineExceeded, DynamicBatcher, Overloaded
from app.engine.errors import InvalidInput
from app.engine.workers import ModelWorkers, WorkerPool

SchedulerT = TypeVar("SchedulerT", DynamicBatcher, ContinuousBatcher)


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


@asynccontextmanager
async def running(scheduler: SchedulerT) -> AsyncIterator[SchedulerT]:
    await scheduler.start()
    try:
        yield scheduler
    finally:
        await scheduler.stop()


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


@pytest.mark.anyio
async def test_a_poisoned_request_among_ten_fails_alone() -> None:
    """Eleven requests share one call; it raises on 'boom'. The call runs again in halves until the culprit's
    request is alone: it gets the error, the ten others their own answers."""
    model = Recorder()
    async with running(batcher(model)) as scheduler:
        requests = [[f"a{i}", f"b{i}"] for i in range(5)] + [["c", "boom"]] + [[f"d{i}"] for i in range(5)]
        results = await asyncio.gather(*(scheduler.submit(r) for r in requests), return_exceptions=True)
    assert isinstance(results[5], ValueError)
    assert [r for i, r in enumerate(results) if i != 5] == [
        [x.upper() for x in r] for i, r in enumerate(requests) if i != 5
    ]
    assert len(model.batches[0]) == 17  # all together first
    assert len(model.batches) <= 1 + 2 * 4  # then about two calls per halving down to one request of eleven


@pytest.mark.anyio
async def test_text_that_is_not_valid_unicode_is_refused_before_it_joins() -> None:
    model = Recorder()
    async with running(batcher(model)) as scheduler:
        with pytest.raises(InvalidInput, match="text 1 is not valid Unicode at character 4"):
            await scheduler.submit(["fine", "abc \ud800"])
        assert await scheduler.submit(["next"]) == ["NEXT"]
    assert model.batches == [["next"]]


@pytest.mark.anyio
async def test_a_large_request_is_taken_in_pieces_and_a_newcomer_rides_the_next_call() -> None:
    """A 40-item request runs 4 items a call; a one-item request that comes meanwhile joins the very next
    call, ahead of the large one's remaining pieces (the least served goes first), which go on sharing calls."""
    model = Recorder(delay=0.05)
    async with running(batcher(model, max_batch=4, max_wait_s=0)) as scheduler:
        large = asyncio.create_task(scheduler.submit([f"w{i}" for i in range(40)]))
        await asyncio.sleep(0.08)  # the large request's first piece or two have run
        calls_before = len(model.batches)  # started, the one in progress included
        assert await scheduler.submit(["small"]) == ["SMALL"]
        assert await large == [f"W{i}" for i in range(40)]
    assert all(len(b) <= 4 for b in model.batches)
    # Into the next call, or the one after if that call's piece was taken before it came: one piece at most.
    assert next(i for i, b in enumerate(model.batches) if "small" in b) in (calls_before, calls_before + 1)
    assert sum(map(len, model.batches)) == 41


@pytest.mark.anyio
async def test_a_request_that_timed_out_stops_costing_model_calls() -> None:
    model = Recorder(delay=0.02)
    async with running(batcher(model, max_batch=2, max_wait_s=0, deadline_s=0.1)) as scheduler:
        with pytest.raises(DeadlineExceeded):
            await scheduler.submit([f"w{i}" for i in range(200)])  # 100 calls: 2 s of work
        calls = len(model.batches)
        await asyncio.sleep(0.3)
        assert len(model.batches) <= calls + 1  # the piece in progress at the deadline, then nothing
        assert scheduler.queued_items == 0
    assert sum(map(len, model.batches)) < 30


@pytest.mark.anyio
async def test_a_queue_holds_at_most_one_piece_of_each_request() -> None:
    """What a newcomer waits behind is one piece of each waiting request: a large request fills the queue by one
    piece, not by all its items, so requests beside it are still taken in."""
    model = Recorder()
    model.release.clear()
    async with running(batcher(model, max_batch=4, max_queue=8, max_wait_s=0)) as scheduler:
        try:
            large = asyncio.create_task(scheduler.submit([f"w{i}" for i in range(100)]))
            await asyncio.sleep(0.05)
            assert scheduler.queued_items == 4  # 96 items wait: one piece of them counts
            small = asyncio.create_task(scheduler.submit(["x", "y", "z", "v"]))
            await asyncio.sleep(0.01)
            with pytest.raises(Overloaded, match="limit 8"):
                await scheduler.submit(["full"])
            model.release.set()
            assert await small == ["X", "Y", "Z", "V"]
            assert len(await large) == 100
        finally:
            model.release.set()


@dataclass
class WordRows:
    """The running batch of `Spelling`: each item's text and the steps it has left."""

    plans: np.ndarray
    left: np.ndarray

    def __len__(self) -> int:
        return len(self.plans)

    def take(self, keep: np.ndarray) -> WordRows:
        return WordRows(self.plans[keep], self.left[keep])

    @staticmethod
    def concat(parts: list[WordRows]) -> WordRows:
        return WordRows(np.concatenate([p.plans for p in parts]), np.concatenate([p.left for p in parts]))


class Spelling:
    """A step model whose item takes a step per letter and answers it upper-cased; an item holding 'badstart'
    makes the start of its batch raise, one holding 'badstep' every step of a batch it is in."""

    name = "spelling"

    def rows(self, plans: list[str]) -> WordRows:
        if any("badstart" in p for p in plans):
            raise ValueError("cannot encode")
        return WordRows(np.array(plans, dtype=object), np.array([len(p) for p in plans]))

    def step(self, rows: WordRows) -> tuple[np.ndarray, np.ndarray]:
        time.sleep(0.002)
        if any("badstep" in p for p in rows.plans):
            raise ValueError("cannot step")
        rows.left -= 1
        return np.zeros(len(rows), dtype=np.int64), rows.left == 0

    def answers(self, rows: WordRows, which: np.ndarray, plans: list[str]) -> list[str]:
        return [p.upper() for p in plans]


@pytest.mark.anyio
async def test_items_that_fail_to_join_a_running_batch_fail_only_their_requests() -> None:
    """A running item and requests joining beside items whose start or first step raises: the culprits'
    requests fail, the running item and every other request are answered."""
    spelling = ContinuousBatcher(
        Spelling(), max_batch=64, max_queue=100, deadline_s=5, limiter=anyio.CapacityLimiter(1)
    )
    async with running(spelling) as scheduler:
        long = asyncio.create_task(scheduler.submit("x" * 200))
        await asyncio.sleep(0.05)  # it is being stepped
        requests = [["ab", "cd"], ["ef", "badstart"], ["gh"], ["badstep", "ij"], ["klm"]]
        results = await asyncio.gather(*(scheduler.submit_many(r) for r in requests), return_exceptions=True)
        assert await long == "X" * 200
    assert results[0] == ["AB", "CD"] and results[2] == ["GH"] and results[4] == ["KLM"]
    assert isinstance(results[1], ValueError) and "encode" in str(results[1])
    assert isinstance(results[3], ValueError) and "step" in str(results[3])


@pytest.mark.anyio
async def test_items_of_concurrent_requests_join_a_running_batch_in_turns() -> None:
    """A request of 60 items and one of a single item that comes after it: the single item joins among the
    first, not behind the 60."""
    joined: list[list[str]] = []
    model = Spelling()
    start = model.rows
    model.rows = lambda plans: joined.append(list(plans)) or start(plans)  # type: ignore[method-assign]
    spelling = ContinuousBatcher(model, max_batch=4, max_queue=100, deadline_s=5, limiter=anyio.CapacityLimiter(1))
    async with running(spelling) as scheduler:
        large = asyncio.create_task(scheduler.submit_many([f"w{i:02d}" for i in range(60)]))
        await asyncio.sleep(0.01)  # the first four are running
        assert await scheduler.submit_many(["one"]) == ["ONE"]
        assert await large == [f"W{i:02d}" for i in range(60)]
    order = [plan for plans in joined for plan in plans]
    assert order.index("one") <= 8  # behind at most a batch's worth of the large request


@pytest.mark.anyio
async def test_a_freed_worker_goes_to_the_model_that_holds_fewest() -> None:
    """The speller holds both workers and waits for a third; the classifier, asking after it, gets the first
    worker that frees. Cancelled waits give nothing away."""
    pool = WorkerPool(2)
    speller, classifier = pool.share("speller"), pool.share("classifier")
    await speller.acquire_on_behalf_of(None)
    await speller.acquire_on_behalf_of(None)
    order: list[str] = []

    async def wait(workers: ModelWorkers) -> None:
        async with workers:
            order.append(workers.model)
            await asyncio.sleep(0.01)

    more = asyncio.create_task(wait(speller))
    await asyncio.sleep(0)
    gone = asyncio.create_task(wait(classifier))
    await asyncio.sleep(0)
    gone.cancel()
    other = asyncio.create_task(wait(classifier))
    await asyncio.sleep(0)
    speller.release_on_behalf_of(None)
    await asyncio.sleep(0.001)
    assert order == ["classifier"]
    speller.release_on_behalf_of(None)
    await asyncio.gather(more, other, gone, return_exceptions=True)
    assert order == ["classifier", "speller"]
    assert pool.busy.total() == 0 and not pool.waiting
