"""The speller's decision to correct: confidence, names left alone, contractions, the user's own words."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.adapters.speller.decision import Policy, Proposal, Reviewed
from app.adapters.speller.evidence import CONTEXTS, FEATURES, Calibration, context
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


def test_each_context_has_its_threshold_unless_one_is_given_for_every_word() -> None:
    text = "Seatle recieve"
    proposals = [Proposal(0, 6, "Seatle", "Seattle", 0.1), Proposal(7, 14, "recieve", "receive", 0.1)]
    reviewed = Reviewed(text, proposals, ("capitalised", "lowercase"))
    tuned = Policy(0.3, by_context={"lowercase": 0.05, "capitalised": 0.3})
    assert tuned.decide(reviewed).text == "Seatle receive"
    assert Policy(0.05).decide(reviewed).text == "Seattle receive"  # a request's own threshold: every word
    assert Policy(0.3).decide(reviewed).text == text
    assert tuned.decide(Reviewed(text, proposals)).text == text  # no context known: min_confidence


def test_a_lowercase_word_beside_no_name_is_the_lowercase_context() -> None:
    assert context("lower", (False, False, False)) == "lowercase"
    assert context("lower", (False, True, False)) == "capitalised"  # "da Novara"
    assert context("title", (False, False, False)) == "capitalised"
    assert context("upper", (False, False, False)) == "capitalised"


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


def test_a_calibration_with_one_threshold_holds_it_for_every_context() -> None:
    entry = {"features": list(FEATURES), "coef": [0.0] * len(FEATURES), "intercept": 0.0, "threshold": 0.2}
    assert Calibration.from_manifest(entry).thresholds == dict.fromkeys(CONTEXTS, 0.2)  # speller 1.7.0's
    with pytest.raises(ValueError, match="thresholds"):
        Calibration.from_manifest(entry | {"thresholds": {"lowercase": 0.1}})


def test_the_answer_map_turns_the_regressions_probability_of_the_answer_into_the_confidence() -> None:
    entry = {"features": list(FEATURES), "coef": [0.0] * len(FEATURES), "intercept": 0.0, "threshold": 0.2}
    entry["coef"][FEATURES.index("score")] = 2.0
    answer_map = {"x": [0.01, 0.3, 0.5, 0.9], "y": [0.0, 0.45, 0.7, 0.95]}
    plain, mapped = Calibration.from_manifest(entry), Calibration.from_manifest(entry | {"answer_map": answer_map})
    assert plain.answer_map is None  # 1.8.0's manifests: the regression's own probability for every candidate
    for scores in np.random.default_rng(0).uniform(-4, 2, (200, 4)):  # one word a row: its answer, 3 alternatives
        features = np.zeros((4, len(FEATURES)))
        features[:, FEATURES.index("score")] = scores
        logistic = plain(features)
        np.testing.assert_allclose(logistic, 1 / (1 + np.exp(-2 * scores)))
        confidence = mapped(features)
        assert confidence[0] == pytest.approx(np.interp(logistic[0], answer_map["x"], answer_map["y"]))
        # Only one candidate can be the word meant: the alternatives keep the regression's probability, scaled
        # down where with the answer's they would pass 1.
        assert confidence.sum() <= 1 + 1e-9
        if logistic[1:].sum() <= 1 - confidence[0]:
            np.testing.assert_allclose(confidence[1:], logistic[1:])
        else:
            np.testing.assert_allclose(confidence[1:] / confidence[1:].sum(), logistic[1:] / logistic[1:].sum())
    ends = np.zeros((2, len(FEATURES)))
    ends[:, FEATURES.index("score")] = (-20, 20)
    assert [mapped(ends[i : i + 1])[0] for i in (0, 1)] == [0.0, 0.95]  # beyond its ends the map holds its end values


@pytest.mark.parametrize(
    "answer_map",
    [{"x": [0.1, 0.5], "y": [0.6, 0.4]}, {"x": [0.5, 0.1], "y": [0.1, 0.5]}, {"x": [0.1, 0.5], "y": [0.1]},
     {"x": [0.5], "y": [0.5]}, {"x": [0.1, 0.5], "y": [0.1, 1.5]}],
)  # fmt: skip
def test_an_answer_map_that_would_reorder_candidates_or_leave_0_to_1_is_refused(answer_map: dict) -> None:
    entry = {"features": list(FEATURES), "coef": [0.0] * len(FEATURES), "intercept": 0.0, "threshold": 0.2}
    with pytest.raises(ValueError, match="answer_map"):
        Calibration.from_manifest(entry | {"answer_map": answer_map})


def test_the_answer_map_learns_how_often_answers_are_right() -> None:
    """Answers whose regression says p are right sqrt(p) of the time: the map, fitted on them, says so too."""
    pytest.importorskip("sklearn", reason="scikit-learn is not installed (the train extra)")
    from training.speller_confidence import answer_map

    rng = np.random.default_rng(0)
    probability = rng.uniform(0, 1, 10000)
    right = rng.uniform(0, 1, len(probability)) < np.sqrt(probability)
    fitted = answer_map(probability, right)
    assert 2 <= len(fitted["x"]) <= 60 and (np.diff(fitted["x"]) > 0).all() and (np.diff(fitted["y"]) >= 0).all()
    grid = np.linspace(0.05, 0.95, 19)
    assert np.abs(np.interp(grid, fitted["x"], fitted["y"]) - np.sqrt(grid)).max() < 0.05


def test_thresholds_are_chosen_per_context_within_the_names_budget() -> None:
    """Two misspellings, one in each context, and two names: the lowest thresholds that correct both while at most
    one name sentence in two changes."""
    from training.speller_confidence import Rows, Sentence, choose_thresholds

    items = [
        Sentence("recieve", "word", "receive", 0, "receive"),
        Sentence("Seatle was here.", "misspelling", "seattle", 0, "seattle"),
        Sentence("We met Wolfe yesterday.", "name", "Wolfe"),
        Sentence("We met Mozart yesterday.", "name", "Mozart"),
    ]
    rows = Rows(
        features=np.zeros((4, 1)),
        label=np.array([True, True, False, False]),
        sentence=np.arange(4),
        answer=np.ones(4, dtype=bool),
        context=np.array(["lowercase", "capitalised", "capitalised", "capitalised"]),
        contraction=np.zeros(4, dtype=bool),
    )
    confidence = np.array([0.02, 0.5, 0.4, 0.7])
    assert choose_thresholds(rows, items, confidence, max_names_changed=0.5) == {"lowercase": 0.0, "capitalised": 0.41}
    # No pair corrects Seatle without both names: the most misspellings within the budget is recieve alone.
    assert choose_thresholds(rows, items, confidence, max_names_changed=0.0) == {"lowercase": 0.0, "capitalised": 0.71}


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


def test_the_tuned_thresholds_hold_per_context_and_a_requests_own_for_every_word(bundled: TestClient) -> None:
    speller = bundled.app.state.registry.models["speller"]
    manifest = speller.manifest.model_extra["confidence"]
    assert speller.policy.by_context == manifest["thresholds"]
    assert speller.policy.min_confidence == max(manifest["thresholds"].values())
    [reviewed] = speller.review_texts(["Nepenthes gracillima and the dissaperd cat"])
    assert dict(zip((p.original for p in reviewed.proposals), reviewed.contexts, strict=True)) == {
        "Nepenthes": "capitalised", "gracillima": "capitalised", "dissaperd": "lowercase"
    }  # fmt: skip
    # A request's min_confidence holds for every word, lowercase ones too.
    [fix] = correct(bundled, "the dissaperd cat", flag_uncertain=True)["corrections"]
    assert fix["status"] == ("applied" if fix["confidence"] >= manifest["thresholds"]["lowercase"] else "flagged")
    above = min(1.0, fix["confidence"] + 0.01)
    assert correct(bundled, "the dissaperd cat", min_confidence=above)["text"] == "the dissaperd cat"
    assert Speller(SPELLER, Settings(speller_min_confidence=0.5)).policy == Policy(0.5)  # the setting: every word


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
    confidence = np.array([speller.calibration(rows.features[i : i + 1])[0] for i in np.flatnonzero(rows.answer)])
    right = rows.label[rows.answer]
    bins = speller_confidence.reliability(confidence, right)
    gaps = np.array([abs(b["mean_confidence"] - b["accuracy"]) for b in bins])
    weights = np.array([b["n"] for b in bins])
    assert (gaps * weights).sum() / weights.sum() < 0.04, bins  # expected calibration error
    assert all(g < 0.1 for g, n in zip(gaps, weights, strict=True) if n >= 100), bins


def test_the_answers_confidence_was_calibrated_out_of_fold() -> None:
    """What training/speller_confidence.py measured on validation and recorded with the model: in every bin of
    confidence with 100 answers or more, the answers' mean confidence is within 0.05 of the share right, each
    fold's regression and answer map fitted on the other folds' words."""
    confidence = json.loads((SPELLER / "manifest.json").read_text())["confidence"]
    assert confidence["answer_map"]["x"], "the bundled speller has no answer map"
    bins = [b for b in confidence["validation"]["bins"] if b["n"] >= 100]
    assert sum(b["n"] for b in bins) > 0.9 * sum(b["n"] for b in confidence["validation"]["bins"]), bins
    assert all(abs(b["mean_confidence"] - b["accuracy"]) <= 0.05 for b in bins), bins
