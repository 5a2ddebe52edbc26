import random
from pathlib import Path

from tests.conftest import needs_shared
from training import speller_data


def test_split_is_stable_and_about_five_percent_each() -> None:
    words = [f"word{i}" for i in range(20000)]
    splits = [speller_data.split_of(w) for w in words]
    assert splits == [speller_data.split_of(w) for w in words]
    assert 0.04 < splits.count("heldout") / len(words) < 0.06
    assert 0.04 < splits.count("valid") / len(words) < 0.06


def test_codespell_ambiguous_and_non_alphabetic_entries_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "dictionary.txt"
    path.write_text("teh->the\nabotu->about, abut,\nDont->don't\n1nd->1st\nrecieve->receive\n")
    assert speller_data.load_codespell_pairs(path) == [("teh", "the"), ("recieve", "receive")]


def test_typos_are_small_edits() -> None:
    rng = random.Random(1)
    for word in ["spelling", "correction", "ab"]:
        for _ in range(50):
            typo = speller_data.make_typo(word, rng)
            assert typo.isalpha() and typo.islower()
            assert abs(len(typo) - len(word)) <= 1


def test_no_evaluation_data_reaches_training_on_tiny_data(tiny_spelling_dir: Path) -> None:
    folder = tiny_spelling_dir
    data = speller_data.build(
        folder, folder / "codespell.txt", folder / "frequency.txt", folder / "extra_words.json.gz", synthetic_words=50
    )
    assert ("speling", "spelling") not in data.train
    assert all(wrong != right for wrong, right in data.train)
    assert data.sources["codespell"]["sha256"] == speller_data.sha256_file(folder / "codespell.txt")
    # Words only the extra list has rank below every counted word; non a-z entries are dropped.
    assert data.dictionary["peoples"] == min(data.dictionary.values()) < data.dictionary["the"]
    assert "naïve" not in data.dictionary


def test_real_split_keeps_evaluation_out_of_training() -> None:
    lab = needs_shared("spelling")
    data = speller_data.build(lab)
    train_targets = {right for _, right in data.train}
    train = set(data.train)
    assert len(data.heldout) > 2000 and len(data.valid) > 2000
    assert not train & set(data.lab_test), "a test.json pair leaked into training"
    assert not train_targets & {right for _, right in data.heldout}, "a held-out target word leaked into training"
    assert not train_targets & {right for _, right in data.valid}
    # The decoding dictionary must not be built from evaluation-only words.
    dictionary = set(data.dictionary)
    general = {w for w, _ in speller_data.load_frequency_words(speller_data.symspell_frequency_path())}
    general |= set(speller_data.load_pyspellchecker_words(speller_data.pyspellchecker_frequency_path()))
    assert {right for _, right in data.heldout} & dictionary <= general
