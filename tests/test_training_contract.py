"""What training writes is what the app reads: a tiny real run, exported, served."""

import asyncio
import json
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import anyio
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from rapidfuzz.distance import OSA

from app.adapters.speller import beam_kernels, beam_step
from app.adapters.speller.beam_step import extend_edits, live_counts, live_layout
from app.adapters.speller.evidence import WordAnswer
from app.adapters.speller.model import Speller as ServedSpeller
from app.adapters.speller.rows import SpellRows
from app.engine.continuous import ContinuousBatcher
from app.main import create_app
from app.settings import Settings
from tests.conftest import BUNDLED_MODELS, rewrite_checksums, tiny_training_args
from training.export import load_speller
from training.speller import EOS_ID, SOS_ID, VOCAB, make_batch
from training.tune_speller import CountingSession, best_setting


def test_training_writes_checkpoint_curves_and_history(tiny_run: Path) -> None:
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert (tiny_run / "best.pt").stat().st_size > 0
    assert (tiny_run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(summary["history"]["loss/train"]) == 2
    assert summary["history"]["loss/train"][1] < summary["history"]["loss/train"][0]
    assert all(0.0 <= v <= 1.0 for v in summary["history"]["accuracy/bleu4"])


def test_training_resumes_from_a_checkpoint(tiny_spelling_dir: Path, tiny_run: Path, tmp_path: Path) -> None:
    from training import speller

    resumed = speller.main(tiny_training_args(tiny_spelling_dir, tmp_path, "--resume", str(tiny_run / "best.pt")))
    cold = json.loads((tiny_run / "summary.json").read_text())
    assert resumed["history"]["loss/valid"][0] < cold["history"]["loss/valid"][0]


def test_manifest_records_the_contract(tiny_artifact: Path) -> None:
    manifest = json.loads((tiny_artifact / "speller" / "manifest.json").read_text())
    assert manifest["vocab"] == VOCAB
    assert manifest["special_tokens"] == {"pad": 0, "sos": 1, "eos": 2, "unk": 3}
    assert manifest["limits"] == {"max_word_len": 12, "max_decode_steps": 13}
    assert set(manifest["files"]) == {"encoder.onnx", "decoder_step.onnx", "dictionary.txt"}
    assert {"lab_train", "lab_test", "codespell", "symspell_frequency"} <= set(manifest["data"])
    assert [t["name"] for t in manifest["graphs"]["decoder_step"]["inputs"]] == [
        "token", "h", "c", "values", "keys", "bias", "slots", "slot_rows",
    ]  # fmt: skip


def test_measured_blocks_survive_a_re_export_of_the_same_weights(tiny_run: Path, tmp_path: Path) -> None:
    """Measured quality and tuned decoding stay when the same weights are exported again (the graph's bytes
    may differ), and go when the weights change."""
    from training.export import write_speller_artifact

    out = tmp_path / "speller"
    write_speller_artifact(tiny_run / "best.pt", out, version="0.0.1")
    manifest = json.loads((out / "manifest.json").read_text())
    measured = {"quality": {"heldout": 0.5}, "decoding": {"beam_size": 4}}
    (out / "manifest.json").write_text(json.dumps({**manifest, **measured}))
    again = write_speller_artifact(tiny_run / "best.pt", out, version="0.0.2")
    assert again["version"] == "0.0.2" and {k: again[k] for k in measured} == measured

    state = torch.load(tiny_run / "best.pt", weights_only=False)
    state["state_dict"]["embed.weight"] += 0.01  # other weights
    torch.save(state, tmp_path / "other.pt")
    (tmp_path / "dictionary.txt").write_text((tiny_run / "dictionary.txt").read_text())
    other = write_speller_artifact(tmp_path / "other.pt", out, version="0.0.3")
    assert other["quality"] == {} and "decoding" not in other


def test_a_measured_block_is_recorded_without_touching_the_rest_of_the_manifest(tmp_path: Path) -> None:
    from training.export.manifest import record_in_manifest

    path = tmp_path / "manifest.json"
    rest = {"name": "speller", "files": {"a.onnx": "0" * 64}}
    path.write_text(json.dumps({**rest, "quality": {"old": 1}}))
    record_in_manifest(path, "quality", {"heldout": 0.9})
    assert json.loads(path.read_text()) == {**rest, "quality": {"heldout": 0.9}}


def test_measure_records_what_the_quality_bench_measured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """training.measure runs the model's quality bench with the options it does not know itself, and records the
    bench's figures, less its sample poems, as the manifest's quality, with the command that measured them."""
    import sys
    import types

    from training import measure

    calls = []

    def bench_main(argv: list[str]) -> dict:
        calls.append(argv)
        return {"measured": "now", "perplexity": 90.0, "examples": {"greedy": []}, "failures": []}

    monkeypatch.setitem(sys.modules, "tests.fake_quality_bench", types.SimpleNamespace(main=bench_main))
    monkeypatch.setitem(measure.BENCHES, "poet", "tests.fake_quality_bench")
    (tmp_path / "poet").mkdir()
    (tmp_path / "poet" / "manifest.json").write_text(json.dumps({"name": "poet", "quality": {}}))
    argv = ["poet", "--data", "poems", "--models-dir", str(tmp_path)]
    assert measure.main(argv)["perplexity"] == 90.0  # without --write-manifest: reported, not recorded
    assert json.loads((tmp_path / "poet" / "manifest.json").read_text())["quality"] == {}
    measure.main([*argv, "--write-manifest"])
    assert calls[-1] == ["--data", "poems", "--models-dir", str(tmp_path)]
    quality = json.loads((tmp_path / "poet" / "manifest.json").read_text())["quality"]
    assert quality == {"measured_by": f"python -m training.measure {' '.join(argv)} --write-manifest",
                       "measured": "now", "perplexity": 90.0}  # fmt: skip


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


def test_the_speller_runs_its_int8_graphs_on_a_cpu_and_float32_when_asked(tiny_run: Path, tmp_path: Path) -> None:
    from app.runtime.artifacts import ArtifactError
    from training.export import write_speller_artifact

    out = tmp_path / "speller"
    manifest = write_speller_artifact(tiny_run / "best.pt", out, version="0.0.1", int8=True)
    assert manifest["precision"]["int8"] == ["encoder_int8", "decoder_step_int8"]
    auto, float32 = ServedSpeller(out, Settings()), ServedSpeller(out, Settings(speller_precision="float32"))
    assert (auto.precision, float32.precision) == ("int8", "float32")
    assert auto.decoder._model_path.endswith("decoder_step.int8.onnx")
    assert float32.decoder._model_path.endswith("decoder_step.onnx")
    words = ["teh", "sentance", "wich"]
    assert len(auto.correct_words(words)) == len(float32.correct_words(words)) == 3

    write_speller_artifact(tiny_run / "best.pt", out, version="0.0.2")  # float32 only: no stale int8 graphs left
    assert not list(out.glob("*.int8.onnx"))
    with pytest.raises(ArtifactError, match=r"speller/manifest\.json: no int8 graphs"):
        ServedSpeller(out, Settings(speller_precision="int8"))


def greedy_reference(
    tiny_run: Path, words: list[str], max_steps: int, allowed: Callable[[str, int], bool]
) -> list[str]:
    """Greedy decoding in PyTorch, one word at a time; allowed(text so far, token id) masks the choices."""
    model, _ = load_speller(tiny_run / "best.pt")
    out = []
    for word in words:
        src, src_len, _, _ = make_batch([(word, word)])
        with torch.no_grad():
            memory, keys, h, c = model.encode(src, src_len)
            bias = torch.zeros(1, src.size(1))
            token, text = SOS_ID, ""
            for _ in range(max_steps):
                logits, h, c = model.decode(torch.tensor([[token]]), h, c, memory, keys, bias)
                scores = logits[0, 0].numpy().copy()
                scores[[not allowed(text, i) for i in range(len(VOCAB))]] = -np.inf
                token = int(scores.argmax())
                if token == EOS_ID:
                    break
                text += VOCAB[token]
        out.append(text)
    return out


def dictionary_only(dictionary: set[str]) -> Callable[[str, int], bool]:
    """Letters that keep the text a prefix of a dictionary word; the end only after a whole word."""
    prefixes = {w[:i] for w in dictionary for i in range(len(w) + 1)}
    return lambda text, i: (i == EOS_ID and text in dictionary) or (len(VOCAB[i]) == 1 and text + VOCAB[i] in prefixes)


def letters_and_end(text: str, i: int) -> bool:
    return i == EOS_ID or len(VOCAB[i]) == 1


def test_batched_serving_decode_matches_pytorch_word_by_word(tiny_run: Path, tiny_artifact: Path) -> None:
    served = ServedSpeller(tiny_artifact / "speller", Settings())
    words = ["teh", "wich", "abuot", "peple", "x", "becuase", "zzzzzzzzzzzz", "thier", "frist"]
    expected = greedy_reference(tiny_run, words, served.max_steps, dictionary_only(set(served.words)))
    assert served.correct_words(words) == expected
    assert all(w in served.words for w in expected)
    # The same words in another order and batch size decode the same.
    assert served.correct_words(words[::-1]) == expected[::-1]
    assert served.correct_words(words[:1]) == expected[:1]


def test_the_app_serves_the_exported_artifact(tiny_artifact: Path) -> None:
    with TestClient(create_app(Settings(models_dir=tiny_artifact))) as client:
        ready = client.get("/ready").json()
        assert ready["models"] == [
            {"name": name, "version": "0.0.1", "provider": "CPUExecutionProvider"}
            for name in ("speller", "classifier", "poet")
        ]
        result = client.post("/correct", json={"text": "Teh peple"}).json()["results"][0]
        assert [c["original"] for c in result["corrections"]] == ["Teh", "peple"][: len(result["corrections"])]


def test_beam_search_is_independent_of_batch_company(tiny_artifact: Path) -> None:
    """Each word's answer is the same alone or beside others; finished words leave the batch safely."""
    served = ServedSpeller(tiny_artifact / "speller", Settings(speller_beam_size=4, speller_prior_weight=0.5,
                                                               speller_edit_penalty=2.0))  # fmt: skip
    words = ["teh", "wich", "abuot", "peple", "x", "becuase", "zzzzzzzzzzzz", "thier", "frist", "sentance"]
    together = served.correct_words(words)
    assert together == [served.correct_words([w])[0] for w in words]
    assert all(w in served.words for w in together)


def test_a_strong_edit_penalty_prefers_the_closest_dictionary_word(artifact_copy: Path) -> None:
    # A dictionary small enough for a beam of 16 to search whole, so the test does not hang on the model.
    folder = artifact_copy / "speller"
    (folder / "dictionary.txt").write_text("then\t1\nthin\t500\nteen\t500\ntenth\t500\n")
    rewrite_checksums(folder)
    served = ServedSpeller(folder, Settings(speller_beam_size=16, speller_prior_weight=1.0, speller_edit_penalty=100.0))
    # "then" is one edit from "thenn", every other word at least two: the prior cannot outweigh that.
    assert served.correct_words(["thenn"]) == ["then"]


def test_the_edit_table_holds_the_osa_distance_to_every_prefix_of_the_misspelling() -> None:
    """The beam keeps each hypothesis's row of the edit-distance table and extends it a character at a time,
    all rows at once; it must agree with rapidfuzz's OSA distance (transpositions count one) everywhere."""
    rng = np.random.default_rng(0)
    width = 9
    misspellings = ["ba", "abc", "acb", "teh", "the", "abuot", "aaaa", "cabbage"] + [
        "".join(rng.choice(list("abc"), size=rng.integers(1, width))) for _ in range(40)
    ]
    spellings = ["ab", "bac", "abc", "the", "teh", "about", "aa", "cabagge"] + [
        "".join(rng.choice(list("abc"), size=rng.integers(1, width))) for _ in range(40)
    ]
    target = np.full((len(misspellings), width - 1), -1, dtype=np.int64)
    for i, word in enumerate(misspellings):
        target[i, : len(word)] = [ord(ch) for ch in word]
    edits = np.broadcast_to(np.arange(width, dtype=np.int32), (len(target), width)).copy()
    edits_prev = np.full_like(edits, 99)
    last = np.zeros(len(target), dtype=np.int64)  # no character yet (the start token)
    for step in range(max(map(len, spellings))):
        token = np.array([ord(s[step]) if step < len(s) else ord("z") for s in spellings], dtype=np.int64)
        edits, edits_prev, last = extend_edits(edits, edits_prev, last, token, target), edits, token
        for i, (spelled, word) in enumerate(zip(spellings, misspellings, strict=True)):
            if step < len(spelled):
                so_far = spelled[: step + 1]
                expected = [OSA.distance(so_far, word[:j]) for j in range(len(word) + 1)]
                assert edits[i, : len(word) + 1].tolist() == expected, (so_far, word)


def test_the_search_stops_a_word_only_when_no_hypothesis_can_beat_its_answer(artifact_copy: Path) -> None:
    """With a dictionary small enough for a beam of 16 to hold every branch, the answer must be the dictionary
    word of best score, scored by hand word by word: a search the edit bound ended too early would miss it."""
    folder = artifact_copy / "speller"
    counts = {"then": 40, "thin": 500, "teen": 300, "tenth": 200, "than": 900, "ten": 60, "hen": 5}
    (folder / "dictionary.txt").write_text("".join(f"{w}\t{n}\n" for w, n in counts.items()))
    rewrite_checksums(folder)
    for penalty in (0.5, 2.0, 6.0):
        served = ServedSpeller(folder, Settings(speller_beam_size=16, speller_prior_weight=1.0,
                                                speller_edit_penalty=penalty, speller_oov_penalty=None))  # fmt: skip
        served.oov_penalty = None  # the dictionary's answer only, whatever the artifact was tuned to
        total = sum(counts.values())
        for misspelling in ["thenn", "tehn", "tne", "htin", "tenht"]:
            best = max(
                counts,
                key=lambda w: (
                    teacher_forced_log_p(served, misspelling, w)
                    + math.log(counts[w] / total)
                    - penalty * OSA.distance(w, misspelling)
                ),
            )
            assert served.correct_words([misspelling]) == [best], (penalty, misspelling)


def teacher_forced_log_p(served: ServedSpeller, misspelling: str, word: str) -> float:
    """log P(word, then the end | misspelling) as the beam scores it: the decoder fed the word's own characters."""
    rows = served.rows([misspelling]).beam
    total = 0.0
    for token in [int(served.byte_to_id[ord(ch)]) for ch in word] + [served.eos_id]:
        logits, h, c = served.decoder.run(None, rows.inputs()[0])
        shifted = logits[0] - logits[0].max()
        total += float(shifted[token] - np.log(np.exp(shifted).sum()))
        rows = replace(rows, token=np.array([token]), h=h, c=c)
    return total


def test_out_of_dictionary_answers_follow_the_penalty(tiny_run: Path, tiny_artifact: Path) -> None:
    words = ["teh", "wich", "abuot", "zzzzzzzzzzzz"]
    folder = tiny_artifact / "speller"
    from_dictionary = ServedSpeller(folder, Settings(speller_beam_size=4)).correct_words(words)
    never = ServedSpeller(folder, Settings(speller_beam_size=4, speller_oov_penalty=1e9))
    assert never.correct_words(words) == from_dictionary
    always = ServedSpeller(folder, Settings(speller_beam_size=4, speller_oov_penalty=-1e9))
    own = greedy_reference(tiny_run, words, always.max_steps, letters_and_end)
    fresh = zip(own, words, from_dictionary, strict=True)
    expected = [o if o and o != w and o not in always.words else d for o, w, d in fresh]
    assert always.correct_words(words) == expected


def test_the_greedy_pass_runs_only_where_it_could_change_the_answer() -> None:
    """A word's out-of-dictionary (greedy) pass waits for its beam search to end and runs only if the beam's best
    word scores below the most a greedy spelling can (`open_ceiling`). On the bundled speller as served: the
    answers are those of running the pass for every word, with fewer rows decoded, and a ceiling set too low on
    purpose (skipping passes that win) changes them."""
    folder, settings = BUNDLED_MODELS / "speller", Settings(intra_op_threads=1)
    # Words the greedy pass wins (spinlcok → spinlock, not spinach), and words the dictionary settles.
    words = ["spinlcok", "bitcoinn", "githbu", "teh", "recieve", "definately", "wich", "datbase", "spinlok"]
    lazy, eager, dictionary_only = (ServedSpeller(folder, settings) for _ in range(3))
    eager.open_ceiling = np.inf  # every word's greedy pass runs
    dictionary_only.oov_penalty = None
    lazy.decoder, eager.decoder = CountingSession(lazy.decoder), CountingSession(eager.decoder)
    answers = lazy.correct_words(words)
    assert answers == eager.correct_words(words)
    assert lazy.decoder.rows < eager.decoder.rows
    wins = [a != d for a, d in zip(answers, dictionary_only.correct_words(words), strict=True)]
    assert answers[0] == "spinlock" and wins[0] and not all(wins)
    lazy.open_ceiling -= 100  # inadmissible: the passes that win are skipped
    assert lazy.correct_words(words) == dictionary_only.correct_words(words) != answers


def test_a_copy_of_the_misspelling_is_never_the_answer(tiny_artifact: Path) -> None:
    # Even at any price for the dictionary's answer, the model echoing the input means it could not place
    # the word: the dictionary's best word stands. A copy would leave a misspelling uncorrected.
    words = ["teh", "wich", "abuot", "zzzzzzzzzzzz", "qqq"]
    always = ServedSpeller(tiny_artifact / "speller", Settings(speller_beam_size=4, speller_oov_penalty=-1e9))
    assert all(fixed != word for fixed, word in zip(always.correct_words(words), words, strict=True))


def test_many_words_are_decoded_in_bounded_chunks_with_the_same_answers(tiny_artifact: Path) -> None:
    folder = tiny_artifact / "speller"
    text = "teh wich abuot peple becuase thier frist sentance zzyzx"
    whole = ServedSpeller(folder, Settings()).correct_texts([text])
    chunked = ServedSpeller(folder, Settings(speller_max_batch_words=2))
    calls: list[int] = []
    decode = chunked.answer_words
    chunked.answer_words = lambda words: calls.append(len(words)) or decode(words)  # type: ignore[method-assign]
    assert chunked.correct_texts([text]) == whole
    assert calls and max(calls) <= 2


def test_words_joining_a_running_beam_search_get_the_answers_they_get_alone(tiny_artifact: Path) -> None:
    """Continuous batching of the speller: words of other lengths join the running batch after its first step
    (their encoder outputs padded to the batch's) and leave as they finish; each answer is the one it gets
    alone, the open (out-of-dictionary) pass included."""
    settings = Settings(speller_beam_size=4, speller_prior_weight=0.5, speller_edit_penalty=2.0, speller_oov_penalty=0)
    served = ServedSpeller(tiny_artifact / "speller", settings)
    words = ["sentance", "teh", "wich", "zzzzzzzzzzzz", "abuot", "x", "becuase", "thier", "frist", "peple"]
    alone = [served.answer_words([w])[0] for w in words]
    rows, order, found = served.rows(words[:2]), np.arange(2), {}
    served.step(rows)  # no beam ends at its first step: both first words are still running
    assert not rows.finished().any()
    rows, order = SpellRows.concat([rows, served.rows(words[2:])]), np.arange(len(words))
    assert len(set(rows.step.tolist())) == 2  # words at different steps in one batch
    while len(rows):
        _, finished = served.step(rows)
        if finished.any():
            done = order[finished]
            found.update(zip(done.tolist(), served.answers(rows, finished, [words[i] for i in done]), strict=True))
            rows, order = rows.take(~finished), order[~finished]
    assert [found[i] for i in range(len(words))] == alone  # the answer, its alternatives and their scores

    async def through_the_batcher() -> list[list[WordAnswer]]:
        batcher = ContinuousBatcher(served, max_batch=3, max_queue=100, deadline_s=30, limiter=anyio.CapacityLimiter(1))
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit_many(words[i : i + 2]) for i in range(0, len(words), 2)))
        finally:
            await batcher.stop()

    assert [a for group in asyncio.run(through_the_batcher()) for a in group] == alone


def test_the_beam_computes_only_as_many_rows_as_live_hypotheses(tiny_artifact: Path) -> None:
    """A word starts with one live hypothesis and one row; after each step every word has as many rows as the
    word with the most live hypotheses, live ones first, and never a word whose search is over."""
    served = ServedSpeller(tiny_artifact / "speller", Settings(speller_beam_size=4, speller_oov_penalty=0))
    rows = served.rows(["sentance", "teh", "wich"])
    assert rows.beam.group == 1 and len(rows.beam) == 3
    while len(rows):
        _, finished = served.step(rows)
        searching = np.unique(rows.beam.word)
        live = np.isfinite(rows.score[searching]).sum(axis=1)
        assert rows.beam.group == max(live.max(initial=1), 1) and len(rows.beam) == len(searching) * rows.beam.group
        live_first = np.arange(rows.score.shape[1])[None, :] < live[:, None]
        assert (np.isfinite(rows.score[searching]) == live_first).all()
        rows = rows.take(~finished)


def test_pruning_keeps_each_words_hypotheses_within_the_margin_of_its_best() -> None:
    """A continuation more than the margin below its word's best candidate of the step is dropped: the live
    hypotheses of every searching word stay within the margin of each other, fewer rows are decoded, and a
    margin nothing falls outside of answers as no pruning does. On the bundled speller: a tiny model's
    next-character distributions are too flat for a margin to bite."""
    words = ["sentance", "teh", "wich", "recieve", "abuot", "untill", "definately", "spinlcok"]

    def speller(margin: float | None) -> ServedSpeller:
        settings = Settings(intra_op_threads=1, speller_prune_margin=margin)
        served = ServedSpeller(BUNDLED_MODELS / "speller", settings)
        served.decoder = CountingSession(served.decoder)
        return served

    margin = 4.0
    pruned = speller(margin)
    assert pruned.prune_margin == margin
    rows = pruned.rows(words)
    while len(rows):
        _, finished = pruned.step(rows)
        for scores in rows.score[np.unique(rows.beam.word)]:
            live = scores[np.isfinite(scores)]
            assert live.max() - live.min() <= margin + 1e-4
        rows = rows.take(~finished)
    full, loose = speller(None), speller(1e9)
    full.set_decoding(full.beam_size, full.prior_weight, full.edit_penalty, full.oov_penalty, None)  # as tuned or not
    answers = full.correct_words(words)
    assert loose.correct_words(words) == answers and loose.decoder.rows == full.decoder.rows
    pruned.decoder.rows = 0
    pruned.correct_words(words)
    assert pruned.decoder.rows < full.decoder.rows


def test_the_compiled_beam_step_is_compiled_once_for_every_batch_shape(tiny_artifact: Path) -> None:
    """numba compiles the speller's beam step once per layout of its arguments: a strided or Fortran-ordered array that
    reached it only on some path (a word joining a running batch, say) would stall that call for seconds
    while it compiled again. Lone words, batches, words leaving and words joining all share one version, the
    very signature the module compiled ahead of time takes (beam_kernels.SIGNATURES), which would refuse any other."""
    from numba.core.sigutils import normalize_signature

    from bench.beam_step_aot import serving

    jit = beam_step.just_in_time()
    if jit is None:
        pytest.skip("numba is not installed: the beam step runs compiled ahead of time only")
    served = ServedSpeller(tiny_artifact / "speller", Settings(speller_beam_size=4, speller_oov_penalty=0))
    with serving(jit):
        for words in (["teh"], ["sentance", "wich", "recieve"], ["a" * 12, "ab", "thier", "wierd", "untill"]):
            served.correct_words(words)
        rows = served.rows(["sentance", "teh"])
        served.step(rows)
        rows = SpellRows.concat([rows, served.rows(["wich", "adress", "occured"])])  # words join between steps
        while len(rows):
            _, finished = served.step(rows)
            rows = rows.take(~finished)
    for name in ("beam_step", "live_counts", "live_layout"):  # extend_edits_row: inside beam_step, its own or cached
        compiled = getattr(jit, name)
        assert len(compiled.overloads) == 1, (compiled, list(compiled.overloads))
        (signature,) = compiled.nopython_signatures
        args, return_type = normalize_signature(beam_kernels.SIGNATURES[name])
        assert (signature.args, signature.return_type) == (args, return_type), name


def test_the_live_row_layout_lists_each_words_first_live_rows_and_where_every_row_reads() -> None:
    """The compiled layout against the array expressions it replaced: each word's live hypotheses (at least one)
    among its `group` rows are decoded, and a row that is not reads its word's first decoded row."""
    rng = np.random.default_rng(0)
    group, words = 5, 40
    score = np.full((words + 3, 8), -np.inf, dtype=np.float32)
    for w, live in enumerate(rng.integers(0, group + 1, size=words + 3)):
        score[w, :live] = rng.normal(size=live)
    here = rng.permutation(words + 3)[:words]
    live = live_counts(score, here, group)
    assert (live == np.isfinite(score[here, :group]).sum(axis=1).clip(min=1)).all()
    rows, decoded_at = live_layout(live, group)
    filled = (np.arange(group)[None, :] < live[:, None]).ravel()
    at = np.cumsum(filled) - 1
    assert (rows == np.flatnonzero(filled)).all()
    assert (decoded_at == np.where(filled, at, np.repeat(at[::group], group))).all()


def test_a_beam_wider_than_the_vocabulary_decodes(tiny_artifact: Path) -> None:
    """At the first step a word has one row, so fewer continuations than a 32-wide beam: the rest are dead."""
    words = ["teh", "sentance", "wich"]
    wide = ServedSpeller(tiny_artifact / "speller", Settings(speller_beam_size=32, speller_oov_penalty=0))
    assert len(VOCAB) < 32
    answers = wide.correct_words(words)
    assert len(answers) == 3 and all(a.isalpha() or a == "" for a in answers)
    assert answers == [wide.correct_words([w])[0] for w in words]  # the same alone as together


def test_padding_follows_the_live_words(tiny_artifact: Path) -> None:
    """Encoder outputs are padded to the longest word in the batch, and cut back when it leaves."""
    served = ServedSpeller(tiny_artifact / "speller", Settings(speller_beam_size=2, speller_oov_penalty=0))
    rows = SpellRows.concat([served.rows(["teh"]), served.rows(["sentance"])])  # joined: padded to 8
    assert rows.beam.values.shape[1] == rows.parked.values.shape[1] == 8
    assert rows.beam.values.shape[0] == rows.parked.values.shape[0] == 2  # once per word, whatever its rows
    assert (rows.beam.bias[0, 3:] < 0).all() and (rows.beam.bias[1] == 0).all()
    short = rows.take(np.array([True, False]))  # the long word leaves
    assert short.beam.values.shape[1] == short.parked.values.shape[1] == 3
    assert list(short.words) == ["teh"] and set(short.beam.word.tolist()) == set(short.parked.word.tolist()) == {0}


def test_a_decoding_set_on_a_loaded_speller_answers_as_one_started_with_it(tiny_artifact: Path) -> None:
    """The tuner sets each grid setting on one loaded speller: what follows from the weights (the ceiling that
    decides whether a word's greedy pass runs) must follow them, or it tunes a speller nobody serves."""
    folder = tiny_artifact / "speller"
    words = ["teh", "wich", "abuot", "zzzzzzzzzzzz", "becuase"]
    tuned = ServedSpeller(folder, Settings(speller_beam_size=2, speller_prior_weight=1.0, speller_edit_penalty=8.0,
                                           speller_oov_penalty=10.0))  # fmt: skip
    tuned.set_decoding(4, 0.5, 2.0, 0.0)
    started = ServedSpeller(folder, Settings(speller_beam_size=4, speller_prior_weight=0.5, speller_edit_penalty=2.0,
                                             speller_oov_penalty=0.0))  # fmt: skip
    assert tuned.open_ceiling == started.open_ceiling
    assert tuned.correct_words(words) == started.correct_words(words)
