"""The benchmarks' own pieces: the naive peer server, FLOP counting, the poet's quality measures."""

from __future__ import annotations

import asyncio
import gc
import math
import os
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import torch
from aiohttp import web
from aiohttp.test_utils import TestServer
from fastapi.testclient import TestClient

from app.adapters.poet import Poet
from app.adapters.speller.model import Speller as ServedSpeller
from app.adapters.speller.rows import SpellRows
from app.settings import Settings
from bench.latency_tail import compare, cpu_seconds, scraped_counters, windows
from bench.load import Result, _one, frozen_heap
from bench.naive_server import create_app as naive_app
from bench.poem_batching import characters, step_flops
from bench.poet_quality import distinct_2, repeated_line_rate, served_perplexity
from bench.poet_units import length_cost, padded_perplexity, position_nll
from bench.speller_scheduling import measure
from bench.speller_tune import best_setting
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


def test_the_speller_series_are_read_from_the_metrics_text() -> None:
    text = (
        'charserve_model_call_seconds_count{model="speller"} 4.0\n'
        'charserve_model_call_seconds_sum{model="speller"} 0.2\n'
        'charserve_model_call_seconds_count{model="poet"} 99.0\n'
        'charserve_batch_requests_sum{model="speller"} 10.0\n'
        'charserve_tokens_total{model="speller"} 500.0\n'
        'charserve_event_loop_lag_seconds_bucket{le="0.025"} 90.0\n'
        'charserve_event_loop_lag_seconds_bucket{le="0.05"} 97.0\n'
        "charserve_event_loop_lag_seconds_count 100.0\n"
    )
    assert scraped_counters(text) == {"calls": 4.0, "call_seconds": 0.2, "words": 10.0, "rows": 500.0,
                                      "wakeups": 100.0, "wakeups_on_time": 97.0}  # fmt: skip


def test_latency_windows_pair_requests_with_what_the_model_did() -> None:
    """Requests fall in the window they were sent in; the model's figures are differences between scrapes."""
    zero = {
        "calls": 0.0,
        "call_seconds": 0.0,
        "words": 0.0,
        "rows": 0.0,
        "wakeups": 0.0,
        "wakeups_on_time": 0.0,
        "server_cpu": 0.0,
        "steal": 0.0,
    }
    scrapes = [(10.0, zero),
               (10.5, {"calls": 2.0, "call_seconds": 0.4, "words": 8.0, "rows": 400.0, "wakeups": 30.0,
                       "wakeups_on_time": 28.0, "server_cpu": 0.45, "steal": 0.05}),
               (11.0, {"calls": 3.0, "call_seconds": 0.45, "words": 9.0, "rows": 450.0, "wakeups": 70.0,
                       "wakeups_on_time": 68.0, "server_cpu": 0.7, "steal": 0.05})]  # fmt: skip
    sent = np.array([10.1, 10.2, 10.6, 11.5])  # the last one after the last scrape: in no window
    latency_ms = np.array([150.0, 150.0, 20.0, 999.0])
    first, second = windows(sent, latency_ms, scrapes)
    assert first == {"t_s": 0.0, "sent": 2, "p99_ms": 150.0, "busy": 0.8, "words_per_call": 4.0,
                     "ms_per_call": 200.0, "us_per_row": 1000.0, "loop_stalls": 2, "server_cpu": 0.9,
                     "steal": 0.1}  # fmt: skip
    assert second["sent"] == 1 and second["p99_ms"] == 20.0 and second["words_per_call"] == 1.0
    assert second["loop_stalls"] == 0 and second["server_cpu"] == 0.5 and second["steal"] == 0.0
    late, on_time = compare([{"windows": [first, second]}]).values()
    assert late["windows"] == on_time["windows"] == 1 and late["words_per_call"] == 4.0


def test_a_process_cpu_time_and_its_cores_stolen_time_are_read_from_proc() -> None:
    before = cpu_seconds(os.getpid(), [0])
    spent = time.process_time()
    while time.process_time() - spent < 0.2:  # burn 0.2 s of CPU in this process
        pass
    after = cpu_seconds(os.getpid(), [0])
    assert 0.1 <= after["server_cpu"] - before["server_cpu"] <= 1.0  # clock ticks: coarse
    assert after["steal"] >= before["steal"] >= 0


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


def test_classifier_flops_count_both_lstms_over_every_padded_position_and_the_dense_layers() -> None:
    from bench.classifier_flops import call_flops

    member = {"emb": 2, "lexicon": 1, "hidden": 3, "ngram_buckets": 0, "ngram_dim": 4, "dense": 5, "classes": 2}
    # one LSTM step: 4 gates x 3 x (2 + 1 + 3) = 72 multiply-adds; two readers over 3 positions: 432; the features
    # (2 readers x 2 poolings x 3 = 12) through the dense layer and the output: 12 x 5 + 5 x 2 = 70; 2 names, x 2.
    assert call_flops([member], names=2, width=3) == 2 * 2 * (432 + 70)
    assert call_flops([member, member], names=2, width=3) == 2 * call_flops([member], names=2, width=3)


def test_collection_pauses_are_summarised_by_count_median_and_worst() -> None:
    from bench.gc_pauses import summary

    assert summary([3.0, 1.0, 200.0]) == {"collections": 3, "median_ms": 3.0, "max_ms": 200.0, "total_ms": 204.0}
    assert summary([]) == {"collections": 0, "median_ms": None, "max_ms": None, "total_ms": 0}


def test_per_position_losses_give_the_training_perplexity(tiny_poet_run: Path) -> None:
    model, state = load_poet(tiny_poet_run / "best.pt")
    char_id = {ch: i for i, ch in enumerate(state["vocab"])}
    poems = [poet_data.encode(t, char_id) for t in ["春风东阳云，长山水月花。", "江天", "秋日明白青，门落时无处。"]]
    nll = position_nll(model, poems, batch_size=2)
    assert [len(x) for x in nll] == [len(p) - 1 for p in poems]  # every character and <eos>, in input order
    mean = sum(float(x.sum()) for x in nll) / sum(len(x) for x in nll)
    assert mean == pytest.approx(math.log(perplexity(model, poems)), rel=1e-5)


def test_padded_rows_count_padding_as_free_predictions() -> None:
    nll = [np.full(9, 2.0), np.full(4, 2.0)]  # encoded lengths 10 and 5
    start = length_cost([5, 5, 7], width=10)
    # Rows of 10: the first poem fills its row; the second has 5 free padding positions and one <bos> to place.
    expected = (9 * 2.0 + 4 * 2.0 + start[5]) / (2 * 9)
    assert padded_perplexity(nll, 10, start) == pytest.approx(math.exp(expected))
    # Rows of 6: the first poem is cut after 5 predictions.
    assert padded_perplexity(nll, 6, length_cost([5], width=6)) == pytest.approx(
        math.exp((5 * 2.0 + 4 * 2.0 + length_cost([5], width=6)[5]) / (2 * 5))
    )
    assert start[5] < start[6]  # a length seen in training costs less to place than one never seen


@pytest.mark.parametrize(("kind", "join_fraction"), [("dynamic", 0.0), ("continuous", 0.5)])
def test_speller_scheduling_bench_answers_words_and_times_the_model(kind: str, join_fraction: float) -> None:
    result = measure(kind, join_fraction, ["speling", "korrect", "wrod", "teh"], clients=4, seconds=0.3)
    assert result["words_per_s"] > 0 and result["flop_per_s"] > 0
    assert result["model_seconds"]["beam steps"] > 0 and result["model_seconds"]["encoder (words joining)"] > 0
    if kind == "dynamic":  # whole batches: nothing ever joins a running one
        assert "batch copies on join" not in result["model_seconds"]
    assert SpellRows.concat.__name__ == "concat"  # the timer is taken off again


def test_the_int8_bench_compares_both_exports_of_one_checkpoint(tiny_run: Path, tmp_path: Path) -> None:
    from bench import speller_int8

    valid = [("teh", "the"), ("wich", "which"), ("sentance", "sentence")]
    words = ["teh", "wich", "abuot", "becuase"]
    rows, answers = {}, {}
    for name, int8 in (("float32", False), ("int8", True)):
        speller = speller_int8.export(tiny_run / "best.pt", tmp_path / name, int8, {"beam_size": 2})
        assert speller.beam_size == 2  # the bundled speller's decoding, not the default
        assert speller.precision == name
        rows[name], answers[name] = speller_int8.measure(tmp_path / name, speller, valid, words)
        assert len(answers[name]) == len(valid) and 0 <= rows[name]["valid_accuracy"] <= 1
        # The size of the graphs it ran (a tiny model's int8 graphs are no smaller: its float32 table of the
        # decoder's input half outweighs the weights that int8 shrinks).
        suffix = ".int8" if int8 else ""
        ran = [tmp_path / name / f"{graph}{suffix}.onnx" for graph in ("encoder", "decoder_step")]
        assert rows[name]["graph_mb"] == round(sum(p.stat().st_size for p in ran) / 1e6, 2) > 0
    report = {"measured": "now", "command": "c", "checkpoint": "x", "decoding": {}, "valid_pairs": 3,
              "answers_differing": 0, **rows}  # fmt: skip
    assert "| int8 |" in speller_int8.markdown(report)


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


def test_a_measured_block_is_recorded_without_touching_the_rest_of_the_manifest(tmp_path: Path) -> None:
    import json

    from bench.harness import record_in_manifest

    path = tmp_path / "manifest.json"
    rest = {"name": "speller", "files": {"a.onnx": "0" * 64}}
    path.write_text(json.dumps({**rest, "quality": {"old": 1}}))
    record_in_manifest(path, "quality", {"heldout": 0.9})
    assert json.loads(path.read_text()) == {**rest, "quality": {"heldout": 0.9}}


def test_a_report_head_names_the_command_that_reproduces_it() -> None:
    from bench.harness import run_record

    head = run_record("bench.serving", ["--seconds", "12"])
    assert head["command"] == "python -m bench.serving --seconds 12"
    assert head["measured"].endswith("+00:00")  # UTC, to the second


def test_poet_optimizers_says_what_ended_each_run() -> None:
    from bench.poet_optimizers import stopped_by

    args = {"epochs": "5", "patience": "2", "max_minutes": "8"}
    run = {"args": args, "best_epoch": 5, "history": {"perplexity/valid": [9, 8, 7, 6, 5]}}
    assert stopped_by(run) == "5 epochs"
    run = {"args": args, "best_epoch": 2, "history": {"perplexity/valid": [9, 8, 8.5, 8.2]}}
    assert stopped_by(run) == "early stop"
    run = {"args": args, "best_epoch": 3, "history": {"perplexity/valid": [9, 8, 7]}}
    assert stopped_by(run) == "the 8-minute bound"


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


def test_the_tuner_keeps_the_narrowest_pruning_margin_that_loses_no_accuracy() -> None:
    """A narrower margin only ever decodes fewer rows, so among equally accurate settings it wins; one that
    costs validation accuracy does not, and one that gains some does."""
    base = {"beam_size": 16, "prior_weight": 0.5, "edit_penalty": 8.0, "oov_penalty": 10.0}
    grid = [{**base, "prune_margin": m, "valid_accuracy": a} for m, a in ((None, 0.906), (16.0, 0.906), (12.0, 0.906))]
    assert best_setting([*grid, {**base, "prune_margin": 8.0, "valid_accuracy": 0.901}])["prune_margin"] == 12.0
    assert best_setting([*grid, {**base, "prune_margin": 8.0, "valid_accuracy": 0.907}])["prune_margin"] == 8.0
    assert best_setting(grid[:1])["prune_margin"] is None
    narrow_beam = {**base, "beam_size": 8, "prune_margin": None, "valid_accuracy": 0.906}
    assert best_setting([*grid, narrow_beam]) == narrow_beam  # a narrower beam first, then the margin


def test_the_flop_count_follows_the_step_graph_the_speller_runs() -> None:
    """Since 1.5.0 the bundled int8 step gathers its LSTM's input half from a table (no multiply-adds there),
    while the float32 step's LSTM op multiplies: the MFU bench counts the FLOPs of the graph that ran."""
    from bench.speller_scheduling import ROOT, FlopCounter, has_lstm_op

    folder = ROOT / "models" / "speller"
    int8 = ServedSpeller(folder, Settings(intra_op_threads=1, speller_precision="int8"))
    float32 = ServedSpeller(folder, Settings(intra_op_threads=1, speller_precision="float32"))
    assert not has_lstm_op(int8) and has_lstm_op(float32)
    config = int8.manifest.model_extra["config"]
    table, lstm = FlopCounter(config, input_table=True), FlopCounter(config)
    assert lstm.decoder_row - table.decoder_row == 4 * config["hidden"] * config["emb"]
