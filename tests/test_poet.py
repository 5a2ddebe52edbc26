"""The poet: data cleaning, training, the step graph, constrained decoding, continuous batching, POST /poem."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import numpy as np
import onnxruntime as ort
import pytest
import torch
from fastapi.testclient import TestClient

from app.adapters.poet import FORMS, PoemRequestError, PoemRows, Poet
from app.engine.continuous import ContinuousBatcher
from app.engine.dynamic import Overloaded
from app.main import create_app
from app.runtime.artifacts import ArtifactError
from app.settings import Settings
from tests.conftest import tiny_poet_args
from training import poet_data
from training.export import export_poet, load_poet, write_poet_artifact
from training.poet import make_optimizer
from training.poet_model import PoetLM

REGULAR = [name for name, form in FORMS.items() if form is not None]


def check_form(poem: str, lines: list[str], form: str) -> None:
    """The exact shape of a regular form: line count, characters per line, ，/。 alternating at line ends only."""
    shape = FORMS[form]
    assert shape is not None
    expected = "".join(f"{'X' * shape.chars}{'，' if i % 2 == 0 else '。'}" for i in range(shape.lines))
    assert re.sub(r"[^，。]", "X", poem) == expected, poem
    assert len(lines) == shape.lines and all(len(line) == shape.chars for line in lines)
    assert "".join(f"{line}{'，' if i % 2 == 0 else '。'}" for i, line in enumerate(lines)) == poem


def bigrams(poem: str) -> list[str]:
    return [a + b for a, b in itertools.pairwise(poem) if a not in "，。？！" and b not in "，。？！"]


# --- data -----------------------------------------------------------------------------------------------------


def test_data_drops_every_trap_and_converts_to_simplified(tiny_tang_dir: Path) -> None:
    data = poet_data.build(tiny_tang_dir, min_count=1)
    assert data.stats["dropped"] == {
        "listed in error/": 1,
        "annotations, lost or non-Han characters": 2,
        "duplicate text": 1,
    }
    poems = data.train + data.valid + data.test
    assert len(poems) == 600 - 4
    text = "".join(p.text for p in poems)
    assert "風" not in text and "风" in text and "東" not in text and "东" in text
    assert {p.id for p in poems}.isdisjoint({"poem-0000", "poem-0001", "poem-0002"})
    assert data.vocab[:4] == poet_data.SPECIALS and "，" in data.vocab


def test_traditional_option_keeps_the_script(tiny_tang_dir: Path) -> None:
    data = poet_data.build(tiny_tang_dir, script="traditional", min_count=1)
    assert "風" in data.vocab and "风" not in data.vocab


def test_split_is_a_stable_hash_of_the_id() -> None:
    ids = [f"id-{i}" for i in range(4000)]
    splits = [poet_data.split_of(i) for i in ids]
    assert splits == [poet_data.split_of(i) for i in ids]
    share = {name: splits.count(name) / len(ids) for name in poet_data.SPLITS}
    assert 0.87 < share["train"] < 0.93 and 0.03 < share["valid"] < 0.07 and 0.03 < share["test"] < 0.07


def test_fetch_refuses_a_tarball_with_the_wrong_checksum(tmp_path: Path) -> None:
    (tmp_path / poet_data.TARBALL).write_bytes(b"not the package")
    with pytest.raises(RuntimeError, match=poet_data.TARBALL_SHA256):
        poet_data.fetch(tmp_path)


def test_encode_wraps_a_poem_in_bos_and_eos() -> None:
    char_id = {t: i for i, t in enumerate([*poet_data.SPECIALS, "春", "，"])}
    assert poet_data.encode("春，秋", char_id) == [2, 4, 5, 1, 3]


# --- model and training -----------------------------------------------------------------------------------------


def test_forget_gate_bias_starts_at_one_and_matrices_are_xavier() -> None:
    model = PoetLM(50, emb=8, hidden=16, layers=2)
    assert torch.all(model.rnn.bias_ih_l0[16:32] == 1) and torch.all(model.rnn.bias_ih_l0[:16] == 0)
    bound = math.sqrt(6 / (16 + 50))
    assert model.out.weight.abs().max() <= bound


@pytest.mark.parametrize("name", ["sgd", "momentum", "adagrad", "adam"])
def test_every_optimizer_of_the_comparison_lowers_the_loss(name: str) -> None:
    torch.manual_seed(0)
    model = PoetLM(20, emb=8, hidden=16, layers=2, dropout=0.0)
    lr = {"sgd": 1.0, "momentum": 0.1, "adagrad": 0.1, "adam": 1e-2}[name]
    optimizer = make_optimizer(name, model.parameters(), lr)
    ids = torch.randint(4, 20, (4, 12))
    losses = []
    for _ in range(20):
        logits, _ = model(ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.9


def test_training_writes_checkpoint_curves_and_test_perplexity(tiny_poet_run: Path) -> None:
    summary = json.loads((tiny_poet_run / "summary.json").read_text())
    assert (tiny_poet_run / "best.pt").is_file() and (tiny_poet_run / "curves.png").stat().st_size > 0
    vocab_size = summary["data"]["vocab_size"]
    # Two epochs on random characters: better than uniform over the vocabulary, and finite.
    assert 1 < summary["test_perplexity"] < vocab_size
    assert len(summary["history"]["perplexity/valid"]) == 2


def test_resume_continues_from_the_last_epoch(tiny_tang_dir: Path, tiny_poet_run: Path, tmp_path: Path) -> None:
    from training import poet

    summary = poet.main(
        tiny_poet_args(tiny_tang_dir, tmp_path, "--epochs", "3", "--resume", str(tiny_poet_run / "last.pt"))
    )
    assert len(summary["history"]["perplexity/valid"]) == 3


def test_a_time_bound_cut_mid_epoch_is_not_counted_as_an_epoch(tiny_tang_dir: Path, tmp_path: Path) -> None:
    """--max-minutes stops part-way through an epoch: that part is kept as best.pt if it is better, but it does
    not enter the history or step the schedule, and last.pt points before it, so --resume runs it again whole."""
    import torch

    from training import poet

    summary = poet.main(tiny_poet_args(tiny_tang_dir, tmp_path, "--epochs", "3", "--max-minutes", "1e-9"))
    assert summary["history"]["perplexity/valid"] == [] and summary["cut_epoch"]["epoch"] == 1
    assert 0 < summary["cut_epoch"]["fraction"] < 1
    last = torch.load(tmp_path / "last.pt", weights_only=False)
    best = torch.load(tmp_path / "best.pt", weights_only=False)
    assert last["epoch"] == 0 and last["scheduler"]["num_bad_epochs"] == 0 and last["scheduler"]["last_epoch"] == 0
    assert best["epoch"] == 1 and best["epoch_fraction"] == summary["cut_epoch"]["fraction"]
    resumed = poet.main(tiny_poet_args(tiny_tang_dir, tmp_path / "more", "--epochs", "2", "--resume",
                                      str(tmp_path / "last.pt")))  # fmt: skip
    assert len(resumed["history"]["perplexity/valid"]) == 2  # epochs 1 and 2, whole


# --- export ------------------------------------------------------------------------------------------------------


# Float graphs: the rounding of stored weights only; the int8 graph also quantizes activations at run time.
# The int8 bounds are about four times the worst error seen on the tiny model (2.7e-3 for both).
TOLERANCE = {"fp32": 1e-5, "fp16": 2e-3, "int8": 1e-2, "int8 graph": 1e-2}


@pytest.mark.parametrize("storage", ["fp32", "fp16", "int8", "int8 graph"])
def test_step_graph_matches_pytorch(tiny_poet_run: Path, tmp_path: Path, storage: str) -> None:
    model, _ = load_poet(tiny_poet_run / "best.pt")
    paths = export_poet(model, tmp_path, storage="fp32" if storage == "int8 graph" else storage, int8=True)
    path = paths["poet_step_int8" if storage == "int8 graph" else "poet_step"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    torch.manual_seed(0)
    tolerance, agree, total = TOLERANCE[storage], 0, 0
    for batch in (1, 3, 17):
        token = torch.randint(4, model.config["vocab_size"], (batch,))
        h, c = model.initial_state(batch)
        for _ in range(5):
            with torch.no_grad():
                expected = model.step(token, h, c)
            got = session.run(None, {"token": token.numpy(), "h": h.numpy(), "c": c.numpy()})
            for e, g in zip(expected, got, strict=True):
                np.testing.assert_allclose(g, e.numpy(), atol=tolerance, rtol=tolerance)
            agree += int((got[0].argmax(axis=1) == expected[0].argmax(dim=1).numpy()).sum())
            total += batch
            token, h, c = expected[0].argmax(dim=1), expected[1], expected[2]
    assert agree / total >= (1.0 if storage in ("fp32", "fp16") else 0.9)


def test_weight_storage_shrinks_the_file(tiny_poet_run: Path, tmp_path: Path) -> None:
    model, _ = load_poet(tiny_poet_run / "best.pt")
    paths = {s: export_poet(model, tmp_path / s, storage=s)["poet_step"] for s in ("fp32", "fp16", "int8")}
    size = {s: path.stat().st_size for s, path in paths.items()}
    assert size["fp16"] < 0.6 * size["fp32"]
    assert size["int8"] < 0.4 * size["fp32"]


def test_int8_graph_on_a_cpu_float_graph_when_asked(tiny_poet_run: Path, tmp_path: Path) -> None:
    write_poet_artifact(tiny_poet_run / "best.pt", tmp_path / "poet", version="0.0.1", int8=True)
    assert Poet(tmp_path / "poet", Settings(providers="cpu")).precision == "int8"
    assert Poet(tmp_path / "poet", Settings(providers="cpu", poet_precision="float32")).precision == "float32"
    write_poet_artifact(tiny_poet_run / "best.pt", tmp_path / "poet", version="0.0.1", int8=False)
    assert not (tmp_path / "poet" / "poet_step.int8.onnx").exists()
    manifest = json.loads((tmp_path / "poet" / "manifest.json").read_text())
    assert manifest["precision"] == {"float32": ["poet_step"]}  # no int8 list when there is no int8 graph
    assert Poet(tmp_path / "poet", Settings(providers="cpu")).precision == "float32"
    with pytest.raises(ArtifactError, match=r"poet/manifest\.json: no int8 graphs"):
        Poet(tmp_path / "poet", Settings(poet_precision="int8"))


# --- decoding ----------------------------------------------------------------------------------------------------


# Every rule of the forms, acrostics, sampling and batching holds for both poets: one form logic, two models.
POETS = ["poet", "poet_transformer"]


@pytest.fixture(scope="module", params=POETS)
def poet(tiny_artifact: Path, request: pytest.FixtureRequest) -> Poet:
    return Poet(tiny_artifact / request.param, Settings())


@pytest.mark.parametrize("form", REGULAR)
def test_every_regular_form_comes_back_exactly(poet: Poet, form: str) -> None:
    plans = [poet.plan(form)] + [poet.plan(form, temperature=t, top_k=k, seed=s) for t, k, s in
                                 [(0.7, 5, 1), (1.0, None, 2), (2.0, 1000, 3), (1.3, 1, 4)]]  # fmt: skip
    for poem in poet.write(plans):
        check_form(poem.poem, poem.lines, form)
        assert len(bigrams(poem.poem)) == len(set(bigrams(poem.poem))), poem.poem
        assert len(set(poem.lines)) == len(poem.lines) and line_openers_differ(poem.lines)


@pytest.mark.parametrize("form", REGULAR)
def test_acrostic_and_prompt_are_honored(poet: Poet, form: str) -> None:
    shape = FORMS[form]
    assert shape is not None
    acrostic, prompt = "春风东阳云长山水"[: shape.lines], "春风东阳云长山"[: shape.chars]
    whole, half, opened = poet.write([
        poet.plan(form, acrostic=acrostic),
        poet.plan(form, acrostic=acrostic[:2], temperature=1.0, seed=9),
        poet.plan(form, prompt=prompt, acrostic="春"),
    ])  # fmt: skip
    for poem in (whole, half, opened):
        check_form(poem.poem, poem.lines, form)
    assert "".join(line[0] for line in whole.lines) == acrostic
    assert "".join(line[0] for line in half.lines[:2]) == acrostic[:2]
    assert opened.lines[0] == prompt


def test_free_form_rules(poet: Poet) -> None:
    plans = [poet.plan("free", max_chars=m, acrostic=a, temperature=t, seed=m)
             for m in (8, 13, 24, 60) for a in ("", "山水") for t in (0.0, 1.5) if len(a) * 4 <= m]  # fmt: skip
    for plan, poem in zip(plans, poet.write(plans), strict=True):
        text = poem.poem
        assert len(text) <= plan.max_chars and text[-1] in "。？！", text
        assert not re.search(r"[，。？！]{2}", text) and text[0] not in "，。？！"
        assert all(1 <= len(line) <= 11 for line in poem.lines), text
        acrostic = "".join(poet.vocab[plan.acrostic])
        assert "".join(line[0] for line in poem.lines[: len(acrostic)]) == acrostic


def test_traditional_characters_in_a_request_are_read_as_simplified(poet: Poet) -> None:
    (poem,) = poet.write([poet.plan("wuyan_jueju", prompt="東", acrostic="東風")])
    assert [line[0] for line in poem.lines[:2]] == ["东", "风"]


def test_sampling_is_fixed_by_the_seed_whatever_the_batch(poet: Poet) -> None:
    alone = poet.write([poet.plan("qiyan_jueju", temperature=1.0, seed=42)])[0]
    crowd = poet.write([poet.plan("wuyan_lushi"), poet.plan("qiyan_jueju", temperature=1.0, seed=42),
                        poet.plan("free", temperature=0.5, seed=1)])  # fmt: skip
    assert crowd[1] == alone
    other = poet.write([poet.plan("qiyan_jueju", temperature=1.0, seed=43)])[0]
    assert other.poem != alone.poem and alone.seed == 42


def test_a_draw_is_the_inverse_cdf_of_the_softmax() -> None:
    """float32 throughout, against float64: each u halfway between two cumulative probabilities picks the
    column whose probability mass holds it; columns at -inf (masked) are never picked."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (3, 40)).astype(np.float32)
    logits[:, ::7] = -np.inf
    for row in logits:
        p = np.exp(row.astype(np.float64) - row.max())
        cdf = np.cumsum(p / p.sum())
        live = np.flatnonzero(p > 0)
        u = (np.concatenate([[0.0], cdf[:-1]])[live] + cdf[live]) / 2  # the middle of each live column's mass
        got = Poet._draw(np.repeat(row[None, :], len(u), axis=0), u)
        assert (got == live).all()


def test_a_repeated_character_pair_is_struck_from_the_choices(poet: Poet) -> None:
    chun, feng = poet.char_id["春"], poet.char_id["风"]
    rows = poet.rows([poet.plan("wuyan_jueju")])
    rows.history[0, :3] = [chun, feng, chun]  # 春风春: 风 may not follow 春 again
    rows.pos[:] = 3
    rows.token[:] = chun
    allowed = np.ones((1, len(poet.vocab)), bool)
    poet.ban_repeats(rows, allowed, np.array([True]))
    assert not allowed[0, feng] and allowed.sum() == len(poet.vocab) - 1


def test_a_line_may_not_open_with_an_earlier_line_opener(poet: Poet) -> None:
    ids = [poet.char_id[ch] for ch in "春风东阳云，长山水月花。"]
    rows = poet.rows([poet.plan("wuyan_jueju")])
    rows.history[0, : len(ids)] = ids
    rows.pos[:] = len(ids)
    rows.token[:] = ids[-1]  # after 。 the third line opens: not with 春 nor 长
    allowed = np.ones((1, len(poet.vocab)), bool)
    poet.ban_repeats(rows, allowed, np.array([True]))
    assert not allowed[0, poet.char_id["春"]] and not allowed[0, poet.char_id["长"]]
    assert allowed.sum() == len(poet.vocab) - 2


def line_openers_differ(lines: list[str]) -> bool:
    return len({line[0] for line in lines}) == len(lines)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"form": "sonnet"}, "not one of"),
        ({"form": "wuyan_jueju", "acrostic": "春风东阳云"}, "wuyan_jueju has 4 lines"),
        ({"form": "wuyan_jueju", "acrostic": "春X"}, "'X' not in the poet's vocabulary"),
        ({"form": "wuyan_jueju", "prompt": "春，"}, "'，' not in"),
        ({"form": "wuyan_jueju", "prompt": "春风东阳云长"}, "line holds 5"),
        ({"form": "wuyan_jueju", "prompt": "风", "acrostic": "春"}, "starts with '风'"),
        ({"form": "qiyan_lushi", "max_chars": 30}, "free form only"),
        ({"form": "free", "max_chars": 5000}, "over the limit"),
        ({"form": "free", "max_chars": 8, "acrostic": "春风东"}, "too few"),
    ],
)
def test_requests_that_cannot_be_written_are_refused_with_reasons(poet: Poet, kwargs: dict, message: str) -> None:
    with pytest.raises(PoemRequestError, match=message):
        poet.plan(**kwargs)


# --- continuous batching -------------------------------------------------------------------------------------------


def run_batcher(poet: Poet, static: bool, scenario, join_fraction: float = 0.0) -> object:
    async def main() -> object:
        batcher = ContinuousBatcher(
            poet, max_batch=8, max_queue=4, deadline_s=30, limiter=anyio.CapacityLimiter(1), static=static,
            join_fraction=join_fraction,
        )  # fmt: skip
        await batcher.start()
        try:
            return await scenario(batcher)
        finally:
            await batcher.stop()

    return asyncio.run(main())


@pytest.mark.parametrize(
    ("static", "join_fraction", "first"),
    [(False, 0.0, "short"), (True, 0.0, "long"), (False, 2.0, "long")],  # 2.0: one waiting poem is not enough
)
def test_a_short_poem_joins_a_running_batch_only_when_continuous(
    poet: Poet, static: bool, join_fraction: float, first: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_step = poet.step

    def slow_step(rows: PoemRows) -> tuple[np.ndarray, np.ndarray]:
        time.sleep(0.002)  # a step as long as a real model's, so the long poem is still running
        return real_step(rows)

    monkeypatch.setattr(poet, "step", slow_step)

    async def scenario(batcher: ContinuousBatcher) -> list[str]:
        finished: list[str] = []

        async def write(label: str, plan) -> None:
            await batcher.submit(plan)
            finished.append(label)

        long = asyncio.create_task(write("long", poet.plan("qiyan_lushi")))
        await asyncio.sleep(0.02)  # the long poem (65 steps) is some steps in; the short one needs 21
        await write("short", poet.plan("wuyan_jueju"))
        await long
        return finished

    order = run_batcher(poet, static, scenario, join_fraction)
    assert order[0] == first


def test_continuous_batching_answers_what_static_calls_answer(poet: Poet) -> None:
    plans = [poet.plan(f, temperature=t, seed=i) for i, (f, t) in enumerate([(f, t) for f in REGULAR for t in (0, 1)])]

    async def scenario(batcher: ContinuousBatcher) -> list:
        first = [asyncio.create_task(batcher.submit(p)) for p in plans[:4]]
        await asyncio.sleep(0.02)  # the second half joins a batch already some steps in
        second = [asyncio.create_task(batcher.submit(p)) for p in plans[4:]]
        return await asyncio.gather(*first, *second)

    batcher_results = run_batcher(poet, False, scenario)
    assert batcher_results == poet.write(plans)


def test_the_padded_static_batch_computes_ended_rows_until_its_last_poem_ends(
    poet: Poet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The textbook baseline: every row of a batch is stepped until its longest poem ends; answers unchanged,
    and the short poems are answered when they end, not with the long one."""
    real_step, rows_seen = poet.step, []

    def counting_step(rows: PoemRows) -> tuple[np.ndarray, np.ndarray]:
        rows_seen.append(len(rows))
        return real_step(rows)

    monkeypatch.setattr(poet, "step", counting_step)
    plans = [poet.plan("wuyan_jueju"), poet.plan("qiyan_lushi"), poet.plan("wuyan_jueju", temperature=1, seed=3)]
    expected = poet.write(plans)
    rows_seen.clear()

    async def scenario(batcher: ContinuousBatcher) -> list:
        order: list[int] = []

        async def write(i: int) -> object:
            poem = await batcher.submit(plans[i])
            order.append(i)
            return poem

        poems = await asyncio.gather(*(write(i) for i in range(3)))
        return [poems, order]

    async def main() -> list:
        batcher = ContinuousBatcher(poet, max_batch=8, max_queue=4, deadline_s=30,
                                    limiter=anyio.CapacityLimiter(1), padded=True)  # fmt: skip
        await batcher.start()
        try:
            return await scenario(batcher)
        finally:
            await batcher.stop()

    poems, order = asyncio.run(main())
    assert poems == expected
    assert order[-1] == 1  # the long poem ends last; the short ones were answered before it
    assert rows_seen == [3] * 65  # qiyan_lushi: 64 characters and <eos>, all three rows at every step


def test_a_full_queue_refuses_at_once_and_gone_clients_are_not_computed(
    poet: Poet, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_step, rows_seen = poet.step, []

    def slow_step(rows: PoemRows) -> tuple[np.ndarray, np.ndarray]:
        rows_seen.append(len(rows))
        time.sleep(0.002)
        return real_step(rows)

    monkeypatch.setattr(poet, "step", slow_step)

    async def scenario(batcher: ContinuousBatcher) -> tuple[int, int]:
        running = asyncio.create_task(batcher.submit(poet.plan("qiyan_lushi")))
        await asyncio.sleep(0.01)  # static batching: the four below wait for the running poem to finish
        waiting = [asyncio.create_task(batcher.submit(poet.plan("qiyan_lushi"))) for _ in range(4)]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded):
            await batcher.submit(poet.plan("wuyan_jueju"))
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        await running
        poem = await batcher.submit(poet.plan("wuyan_jueju"))
        return len(poem.lines), len(batcher.waiting)

    assert run_batcher(poet, True, scenario) == (4, 0)
    assert max(rows_seen) == 1  # the cancelled poems never reached the model


def test_a_stream_left_early_frees_its_row(poet: Poet, monkeypatch: pytest.MonkeyPatch) -> None:
    real_step, rows_seen = poet.step, []

    def counting_step(rows: PoemRows) -> tuple[np.ndarray, np.ndarray]:
        rows_seen.append(len(rows))
        return real_step(rows)

    monkeypatch.setattr(poet, "step", counting_step)

    async def scenario(batcher: ContinuousBatcher) -> tuple[list[str], bool]:
        characters, finished = await batcher.stream(poet.plan("qiyan_lushi"))
        first = []
        async for ch in characters:  # the client reads three characters, then goes away
            first.append(ch)
            if len(first) == 3:
                break
        await characters.aclose()
        await asyncio.sleep(0.05)
        return first, finished.cancelled()

    first, cancelled = run_batcher(poet, False, scenario)
    assert len(first) == 3 and cancelled
    assert len(rows_seen) < 64  # a qiyan_lushi takes 65 steps: the row left long before


def test_a_failing_step_fails_only_its_poems(poet: Poet, monkeypatch: pytest.MonkeyPatch) -> None:
    real_step = poet.step
    calls = {"n": 0}

    def flaky(rows: PoemRows) -> tuple[np.ndarray, np.ndarray]:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("device lost")
        return real_step(rows)

    monkeypatch.setattr(poet, "step", flaky)

    async def scenario(batcher: ContinuousBatcher) -> tuple[str, int]:
        with pytest.raises(RuntimeError, match="device lost"):
            await batcher.submit(poet.plan("wuyan_jueju"))
        poem = await batcher.submit(poet.plan("wuyan_jueju"))
        return type(poem).__name__, len(poem.lines)

    assert run_batcher(poet, False, scenario) == ("Poem", 4)


# --- HTTP ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(tiny_artifact: Path) -> Iterator[TestClient]:
    settings = Settings(models_dir=tiny_artifact, models=POETS)
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.mark.parametrize("model", POETS)
def test_poem_endpoint_writes_the_form(client: TestClient, model: str) -> None:
    response = client.post("/poem", json={"form": "qiyan_jueju", "acrostic": "春风", "model": model})
    assert response.status_code == 200
    body = response.json()
    check_form(body["poem"], body["lines"], "qiyan_jueju")
    assert [line[0] for line in body["lines"][:2]] == ["春", "风"] and body["form"] == "qiyan_jueju"
    assert body["seed"] is None
    sampled = client.post("/poem", json={"form": "wuyan_jueju", "temperature": 0.9, "model": model}).json()
    again = client.post(
        "/poem", json={"form": "wuyan_jueju", "temperature": 0.9, "seed": sampled["seed"], "model": model}
    ).json()
    assert again == sampled


@pytest.mark.parametrize("model", POETS)
def test_poem_streams_one_event_per_character(client: TestClient, model: str) -> None:
    with client.stream("POST", "/poem", json={"form": "wuyan_jueju", "stream": True, "model": model}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [block for block in response.read().decode().split("\n\n") if block]
    parsed = [(e.split("\n")[0].removeprefix("event: "), json.loads(e.split("\n")[1].removeprefix("data: ")))
              for e in events]  # fmt: skip
    chars = [data["char"] for name, data in parsed if name == "char"]
    assert parsed[-1][0] == "poem" and len(chars) == len(parsed) - 1
    assert "".join(chars) == parsed[-1][1]["poem"]
    check_form(parsed[-1][1]["poem"], parsed[-1][1]["lines"], "wuyan_jueju")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"form": "sonnet"}, "wuyan_jueju"),
        ({"form": "wuyan_jueju", "acrostic": "春风东阳云"}, "at most 4 characters"),  # the schema's per-form limit
        ({"form": "wuyan_jueju", "acrostic": "春Z"}, "'Z' not in the poet's vocabulary"),
        ({"temperature": -0.1}, "greater than or equal to 0"),
        ({"temperature": 2.5}, "less than or equal to 2"),
        ({"top_k": 0}, "greater than or equal to 1"),
        ({"form": "free", "prompt": "春" * 12}, "at most 11 characters"),
        ({"form": "wuyan_jueju", "prompt": "春风东阳云长"}, "at most 5 characters"),
        ({"poem": "?"}, "Extra inputs"),
        ({"model": "gpt"}, "'poet' or 'poet_transformer'"),
    ],
)
def test_bad_poem_requests_get_4xx_with_reasons(client: TestClient, body: dict, message: str) -> None:
    response = client.post("/poem", json=body)
    assert response.status_code == 422
    assert message in json.dumps(response.json(), ensure_ascii=False)


def test_poem_metrics_count_steps_and_rows(client: TestClient) -> None:
    def model_calls(text: str) -> float:
        found = re.search(r'charserve_model_call_seconds_count\{model="poet"\} (\S+)', text)
        return float(found.group(1)) if found else 0.0

    before = model_calls(client.get("/metrics").text)  # the client is shared with other tests
    poem = client.post("/poem", json={"form": "wuyan_jueju"}).json()["poem"]
    text = client.get("/metrics").text
    assert re.search(r'charserve_tokens_total\{model="poet"\} [1-9]', text)
    assert 'charserve_batch_size_count{model="poet"}' in text
    # Every decoding step through the batcher is one model call, timed: a character each, then the end.
    assert model_calls(text) - before == len(poem) + 1
