"""The benchmarks' own pieces: the naive peer server, the load generator, FLOP counting, the poet's quality
measures, the reports."""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path

import aiohttp
import pytest
import torch
from aiohttp import web
from aiohttp.test_utils import TestServer
from fastapi.testclient import TestClient

from app.adapters.poet import Poet
from app.settings import Settings
from bench.load import Result, _one, frozen_heap
from bench.naive_server import create_app as naive_app
from bench.poem_batching import characters, step_flops
from bench.poet_quality import distinct_2, repeated_line_rate, served_perplexity
from training import poet_data
from training.export import load_poet
from training.poet import perplexity


def test_naive_server_answers_both_endpoints(tiny_run: Path, tiny_classifier_run: Path) -> None:
    with TestClient(naive_app(tiny_run / "best.pt", [tiny_classifier_run / "best.pt"] * 2)) as client:
        assert client.get("/ready").json() == {"status": "ready"}
        fixed = client.post("/correct", json={"text": "teh"}).json()["results"][0]["text"]
        assert isinstance(fixed, str) and fixed.isascii()
        label = client.post("/classify", json={"text": "Antonio_Veciana"}).json()["results"][0]["label"]
        assert label in ("Person", "Place", "Organisation", "Work", "Species")


def test_the_naive_server_runs_the_bundled_models_without_a_training_run() -> None:
    models = Path(__file__).resolve().parent.parent / "models"
    with TestClient(naive_app(models / "speller", [models / "classifier"])) as client:
        assert client.post("/correct", json={"text": "recieve"}).json() == {"results": [{"text": "receive"}]}
        assert client.post("/classify", json={"text": "Cross_Bayou"}).json() == {"results": [{"label": "Place"}]}


def test_step_flops_counts_lstm_gates_and_the_output_layer() -> None:
    manifest = {"config": {"emb": 2, "hidden": 3, "layers": 2, "vocab_size": 5}}
    # layer 1: 4·3·(2+3) = 60, layer 2: 4·3·(3+3) = 72, output: 3·5 = 15 multiply-adds.
    assert step_flops(manifest) == 2 * (60 + 72 + 15)


def test_characters_are_read_from_the_metrics_text() -> None:
    text = '# HELP x\ncharserve_tokens_total{model="speller"} 9.0\ncharserve_tokens_total{model="poet"} 123.0\n'
    assert characters(text) == 123.0


def test_the_open_loop_charges_a_late_send_and_measures_with_the_heap_frozen() -> None:
    """Latency counts from when the schedule said a request goes, so a load generator that falls behind its
    schedule shows it; while it measures, its start-up objects are frozen out of collections."""

    async def late_request() -> float:
        async def handler(request: web.Request) -> web.Response:
            return web.json_response({})

        app = web.Application()
        app.router.add_post("/x", handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            result = Result(1)
            async with aiohttp.ClientSession() as session:
                # due half a second before it is sent: a send that fell behind the schedule
                await _one(session, str(server.make_url("/x")), {}, result, due=time.perf_counter() - 0.5)
            return result.latencies[0]
        finally:
            await server.close()

    assert asyncio.run(late_request()) >= 0.5
    with frozen_heap():
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0  # unfrozen once done


def test_distinct_2_and_repeated_lines() -> None:
    assert distinct_2(["春风春风，秋月。"]) == pytest.approx(3 / 4)  # 春风 风春 春风 秋月
    assert repeated_line_rate(["春风，春风。", "春风，秋月。"]) == 0.5


def test_served_perplexity_equals_training_perplexity(tiny_artifact: Path, tiny_poet_run: Path) -> None:
    poet = Poet(tiny_artifact / "poet", Settings())
    texts = ["春风东阳云，长山水月花。", "秋日明白青，门落时无处。", "江天"]
    model, _ = load_poet(tiny_poet_run / "best.pt")
    char_id = poet.char_id
    with torch.no_grad():
        expected = perplexity(model, [poet_data.encode(t, char_id) for t in texts])
    # The artifact stores float16 weights: the same up to their rounding.
    assert served_perplexity(poet, texts) == pytest.approx(expected, rel=2e-3)


def test_the_peer_given_a_lexicon_reads_each_word_as_one_token_of_its_numbers() -> None:
    from bench.classifier_baseline import word_classes
    from training.classifier_data import Lexicon

    frequency = Lexicon({"the": (1.0,), "river": (0.44,), "palace": (0.35,)}, ("log_frequency",))
    tokens = word_classes(frequency)
    assert tokens(["The_River_(film)", "%C5%BDeljko_Palace", "1999"]) == ["0_10 0_4 unknown", "unknown 0_4", "none"]
    values = {"castle": (0.5, 0.0, 0.5), "boston": (0.0, 1.0, 1.0)}
    senses = Lexicon(values, ("artifact", "location", "verb"), (("s", ""),))
    assert word_classes(senses)(["Castles_of_Boston"]) == ["0_5+2_5 unknown 1_10+2_10"]


def test_the_serving_plots_and_latency_table_are_written(tmp_path: Path) -> None:
    from bench.latency_curve import markdown as curve_markdown
    from bench.serving_plots import latency_against_load, throughput_and_latency

    def row(server: str, rate: float) -> dict:
        return {"server": server, "endpoint": "/correct", "concurrency": 64, "ok_per_s": rate,
                "ok_per_s_rounds": [rate - 5, rate, rate + 5], "p50_ms": 10, "p95_ms": 20, "p99_ms": 30}  # fmt: skip

    report = {"command": "c", "measured": "now", "rows": [row("charserve", 200.0), row("LitServe", 150.0)]}
    throughput_and_latency(report, tmp_path / "serving.png")
    points = [{"fraction": f, "offered_per_s": 100 * f, "ok_per_s": 100 * f, "p50_ms": 5.0, "p95_ms": 9.0,
               "p99_ms": 12.0, "statuses": {"200": 10, "503": 1}} for f in (0.5, 1.0)]  # fmt: skip
    curve = {"measured": "now", "command": "c", "endpoint": "/correct", "server_cores": "0", "client_cores": "1",
             "servers": {"charserve": points}}  # fmt: skip
    latency_against_load(curve, tmp_path / "curve.png")
    assert (tmp_path / "serving.png").read_bytes()[:4] == (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "| charserve | 100.0 (1.00) | 100.0 | 5.0 | 9.0 | 12.0 | 1 |" in curve_markdown(curve)


def test_a_report_head_names_the_command_that_reproduces_it() -> None:
    from bench.harness import run_record

    head = run_record("bench.serving", ["--seconds", "12"])
    assert head["command"] == "python -m bench.serving --seconds 12"
    assert head["measured"].endswith("+00:00")  # UTC, to the second


def test_the_serving_table_gives_each_peers_ratio_within_each_round() -> None:
    from bench.serving import LABELS, round_ratios

    def run(round_: int, server: str, rate: float) -> dict:
        return {"round": round_, "server": server, "endpoint": "/correct", "ok_per_s": rate}

    naive = LABELS["d"]
    runs = [run(0, "charserve", 800), run(0, "charserve, open loop at half its peak", 400), run(0, naive, 200),
            run(1, naive, 150), run(1, "charserve", 600), run(2, naive, 100)]  # fmt: skip
    # Round 2 has no charserve row (a failed start, say): no ratio for it rather than one against another round.
    assert round_ratios(runs) == [(naive, "/correct", [4.0, 4.0])]
    assert LABELS["b"] == "charserve" and len(LABELS) == 7


def test_revisions_reads_the_cpu_time_of_the_event_loop_and_of_all_threads() -> None:
    import os
    import threading

    from bench.revisions import cpu_seconds

    def spin() -> None:
        while time.thread_time() < 0.3:
            pass

    loop_before, all_before = cpu_seconds(os.getpid())
    spin = threading.Thread(target=spin)
    spin.start()
    spin.join()
    loop_after, all_after = cpu_seconds(os.getpid())
    # The other thread's spin counts for the process, not for the main thread, which only waited for it.
    assert all_after - all_before >= 0.2
    assert loop_after - loop_before < (all_after - all_before) / 2


def test_revisions_compares_each_round_with_the_first_revision_of_that_round() -> None:
    from bench.revisions import summarise

    def run(round_: int, revision: str, rate: float) -> dict:
        return {"round": round_, "revision": revision, "endpoint": "/correct", "ok_per_s": rate,
                "loop_ms_per_request": 0.5, "other_threads_ms_per_request": 1.0}  # fmt: skip

    # A slow second round slows both revisions: the ratios within each round are what stay 0.9.
    runs = [run(0, "old", 500), run(0, "new", 450), run(1, "old", 300), run(1, "new", 270), run(2, "old", 400),
            run(2, "new", 360)]  # fmt: skip
    old, new = summarise(runs, ["old", "new"])
    assert (old["revision"], old["ratio_to_first"], old["ok_per_s"]) == ("old", 1.0, 400)
    assert (new["revision"], new["ratio_to_first"], new["ratio_range"]) == ("new", 0.9, [0.9, 0.9])
