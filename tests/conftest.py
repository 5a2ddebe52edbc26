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


@pytest.fixture(scope="session")
def tiny_artifact(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/<name>/ as export writes it, for the tiny run; tests copy it before breaking it."""
    from training.export import write_speller_artifact

    models = tmp_path_factory.mktemp("models")
    write_speller_artifact(tiny_run / "best.pt", models / "speller", version="0.0.1")
    return models


@pytest.fixture
def artifact_copy(tiny_artifact: Path, tmp_path: Path) -> Path:
    shutil.copytree(tiny_artifact, tmp_path / "models")
    return tmp_path / "models"


def rewrite_checksums(folder: Path) -> None:
    """After a test edits an artifact's file on purpose, make the manifest agree with it again."""
    from app.artifacts import sha256_file

    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = {name: sha256_file(folder / name) for name in manifest["files"]}
    (folder / "manifest.json").write_text(json.dumps(manifest))
