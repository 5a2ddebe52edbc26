"""The speller's decision to correct: confidence, names left alone, contractions, the user's own words."""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.adapters.speller.decision import Policy, Proposal, Reviewed
from app.adapters.speller.evidence import FEATURES, Calibration
from app.adapters.speller.model import Speller
from app.adapters.speller.text import candidate_words, restore_case
from app.main import create_app
from app.settings import Settings
from tests.conftest import BUNDLED_MODELS, needs_shared

SPELLER = BUNDLED_MODELS / "speller"


@pytest.fixture(scope="module")
def bundled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    words = tmp_path_factory.mktemp("words") / "extra.txt"
    words.write_text("# our product names\nGrafanna\nwrok\n")
    settings = Settings(models=["speller"], speller_extra_words=words)
    with TestClient(create_app(settings)) as client:
        yield client


def correct(client: TestClient, text: str, **options: object) -> dict:
    response = client.post("/correct", json={"text": text, **options})
    assert response.status_code == 200, response.text
    return response.json()["results"][0]


# Without a model: the policy and the text's shape.


def test_policy_applies_flags_or_drops_by_confidence_and_ignores_the_users_words() -> None:
    text = "Ths sentense"
    reviewed = Reviewed(text, [Proposal(0, 3, "Ths", "This", 0.9), Proposal(4, 12, "sentense", "sentence", 0.2)])
    assert Policy(0.5).decide(reviewed).text == "This sentense"
    flagged = Policy(0.5, flag_uncertain=True).decide(reviewed)
    assert flagged.text == "This sentense"
    assert [c.status for c in flagged.corrections] == ["applied", "flagged"]
    assert Policy(0.1).decide(reviewed).text == "This sentence"
    ignoring = Policy(0.1, ignore_words=frozenset({"ths"})).decide(reviewed)
    assert ignoring.text == "Ths sentence" and [c.original for c in ignoring.corrections] == ["sentense"]


def test_words_know_where_their_sentence_starts_and_their_neighbours() -> None:
    tokens = {t.text: t for t in candidate_words("We saw Acacia dealbata. Then\nit rained, da Novara said")}
    assert tokens["We"].sentence_start and tokens["Then"].sentence_start and tokens["it"].sentence_start
    assert not tokens["Acacia"].sentence_start
    assert tokens["dealbata"].follows == "Acacia" and not tokens["dealbata"].follows_start
    assert tokens["Then"].follows == ""  # a full stop parts them
    assert tokens["da"].precedes == "Novara"
    assert "don't" not in {t.text for t in candidate_words("I don't know O'Brien")}


def test_contractions_keep_the_writers_case() -> None:
    assert restore_case("dont", "don't") == "don't"
    assert restore_case("Dont", "don't") == "Don't"
    assert restore_case("DONT", "don't") == "DON'T"
    assert restore_case("im", "I'm") == "I'm"


def test_a_calibration_for_other_features_is_refused() -> None:
    entry = {"features": ["score"], "coef": [1.0], "intercept": 0.0, "threshold": 0.5}
    with pytest.raises(ValueError, match="features"):
        Calibration.from_manifest(entry)
    assert Calibration.from_manifest(None) is None


# The bundled model and its fitted calibration.


def test_misspellings_are_fixed_with_their_confidence(bundled: TestClient) -> None:
    result = correct(bundled, "Ths sentense has erors")
    assert result["text"] == "This sentence has errors"
    for fix in result["corrections"]:
        assert 0 <= fix["confidence"] <= 1 and fix["status"] == "applied" and len(fix["alternatives"]) <= 3


@pytest.mark.parametrize(
    "text",
    [
        "I moved to Kubernetes and Pytorch in Seattle",
        "I read about Željko Ivanek yesterday.",
        "We put AWS and Grafana on the list",
        "The wattle Acacia dealbata flowers in winter.",
    ],
)
def test_names_inside_a_sentence_are_left_alone(bundled: TestClient, text: str) -> None:
    result = correct(bundled, text)
    assert result == {"text": text, "corrections": []}


def test_doubts_can_be_flagged_without_a_rewrite(bundled: TestClient) -> None:
    text = "I read about Ivanek yesterday."
    result = correct(bundled, text, flag_uncertain=True)
    assert result["text"] == text
    [flag] = result["corrections"]
    assert (flag["start"], flag["end"], flag["original"], flag["status"]) == (13, 19, "Ivanek", "flagged")
    assert flag["confidence"] < bundled.app.state.registry.models["speller"].policy.min_confidence
    assert correct(bundled, text, min_confidence=0)["text"] != text  # a request may lower the threshold


def test_contractions_without_apostrophes_get_them_back(bundled: TestClient) -> None:
    result = correct(bundled, "I dont know why Im here, O'Brien said it's fine")
    assert result["text"] == "I don't know why I'm here, O'Brien said it's fine"
    assert {c["kind"] for c in result["corrections"]} == {"contraction"}
    assert all(c["confidence"] >= 0.9 for c in result["corrections"])


def test_the_users_words_are_never_corrected(bundled: TestClient) -> None:
    # Grafanna and wrok are in the server's extra word list; "teh" only in this request's ignore_words.
    assert correct(bundled, "Grafanna runs at wrok")["text"] == "Grafanna runs at wrok"
    assert correct(bundled, "teh cat", ignore_words=["TEH"])["text"] == "teh cat"
    assert correct(bundled, "teh cat")["text"] == "the cat"


def test_request_options_are_checked(bundled: TestClient) -> None:
    for bad in ({"min_confidence": 2}, {"flag_uncertain": "maybe"}, {"ignore_words": "teh"}):
        response = bundled.post("/correct", json={"text": "teh", **bad})
        assert response.status_code == 422, bad


def test_the_fitted_confidence_is_calibrated_on_validation_data() -> None:
    """On validation misspellings and names (as training/speller_confidence.py builds them), the answers'
    predicted confidence is close to how often they are right, bin by bin."""
    from training import speller_confidence, speller_data

    lab = needs_shared("spelling")
    names_dir = needs_shared("dbpedia")
    valid = random.Random(1).sample(speller_data.build(lab).valid, 600)
    names = random.Random(1).sample(speller_confidence.load_names(names_dir, ("valid",)), 900)
    items = speller_confidence.sentences(valid, names, seed=1)
    speller = Speller(SPELLER, Settings())
    assert speller.calibration is not None and len(speller.calibration.coef) == len(FEATURES)
    rows = speller_confidence.decode(speller, items)
    confidence = speller.calibration(rows.features)[rows.answer]
    right = rows.label[rows.answer]
    bins = speller_confidence.reliability(confidence, right)
    gaps = np.array([abs(b["mean_confidence"] - b["accuracy"]) for b in bins])
    weights = np.array([b["n"] for b in bins])
    assert (gaps * weights).sum() / weights.sum() < 0.04, bins  # expected calibration error
    assert all(g < 0.1 for g, n in zip(gaps, weights, strict=True) if n >= 100), bins
