"""The OpenAPI document tells the truth: schemathesis sends what the schema allows and what it forbids, and every
check it has holds on every answer. The app runs on a real uvicorn socket (tests/test_hostile_clients.LiveServer),
its models loaded by the lifespan as in production."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.adapters.poet import FORMS
from app.api.schemas import NOT_BLANK, FreePoem, QiyanJueju, QiyanLushi, WuyanJueju, WuyanLushi
from app.main import create_app
from app.settings import Settings
from tests.test_hostile_clients import LiveServer

load_all_checks()
EVERY_CHECK = list(CHECKS.get_all())
# A refusal of invalid data: 408 and 413 are refusals too (too slow, too large), beside schemathesis's own list.
REJECTIONS = ["400", "401", "403", "404", "405", "406", "408", "409", "413", "415", "422", "428", "429", "5xx"]
EXAMPLES = int(os.environ.get("CHARSERVE_SCHEMATHESIS_EXAMPLES", "60"))  # per operation and mode: ~30 s on 2 cores
CONFIG = schemathesis.Config.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": REJECTIONS}}})


@pytest.fixture(scope="module")
def live_schema(tiny_artifact: Path) -> Iterator[schemathesis.BaseSchema]:
    app = create_app(Settings(models_dir=tiny_artifact, max_texts=4, max_text_chars=50, access_log=False))
    with LiveServer(app) as server:
        yield schemathesis.openapi.from_url(f"http://127.0.0.1:{server.port}/openapi.json", config=CONFIG)


# schemathesis's pytest plugin (`from_fixture`) reads a node attribute pytest 9 no longer has: the operations'
# strategies run under hypothesis directly instead, positive (what the schema allows) and negative (what it forbids).
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_every_answer_agrees_with_the_schema(live_schema: schemathesis.BaseSchema, mode: GenerationMode) -> None:
    operations = [result.ok() for result in live_schema.get_all_operations()]
    assert {(op.method.upper(), op.path) for op in operations} >= {("POST", "/correct"), ("POST", "/poem")}
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not operation.body:
            continue  # no parameters and no body: nothing can be sent that the schema forbids
        check_answers(operation, mode)


def check_answers(operation: schemathesis.APIOperation, mode: GenerationMode) -> None:
    # The poet alone refuses some requests the schema allows, with 422 and the reason: characters outside its
    # vocabulary (a model's, not a schema's, to know), a prompt and an acrostic that open differently, a free
    # form too short for its acrostic. So only there is schema-valid data not always accepted.
    excluded = [positive_data_acceptance] if operation.path == "/poem" else []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def answer_agrees(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=EVERY_CHECK, excluded_checks=excluded, timeout=30)

    answer_agrees()


def test_the_per_form_limits_are_the_poets() -> None:
    """The schema's per-form limits, written out for the document, are the adapter's forms."""
    models = {"wuyan_jueju": WuyanJueju, "qiyan_jueju": QiyanJueju, "wuyan_lushi": WuyanLushi,
              "qiyan_lushi": QiyanLushi, "free": FreePoem}  # fmt: skip
    assert set(models) == set(FORMS)
    for form, model in models.items():
        shape = FORMS[form]
        properties = model.model_json_schema()["properties"]
        if shape is not None:
            assert properties["prompt"]["maxLength"] == shape.chars
            assert properties["acrostic"]["maxLength"] == shape.lines
            assert "max_chars" not in properties
        else:
            assert "max_chars" in properties


def test_the_document_names_every_answer(tiny_artifact: Path) -> None:
    document = create_app(Settings(models_dir=tiny_artifact)).openapi()
    for path in ("/correct", "/classify", "/poem"):
        answers = set(document["paths"][path]["post"]["responses"])
        assert {"200", "401", "408", "413", "415", "422", "500", "503", "504"} <= answers, path
    poem = document["paths"]["/poem"]["post"]
    assert set(poem["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    assert "oneOf" in poem["requestBody"]["content"]["application/json"]["schema"]
    texts = document["components"]["schemas"]["CorrectRequest"]
    assert texts["oneOf"] == [{"required": ["text"]}, {"required": ["texts"]}]
    assert texts["properties"]["texts"]["items"]["pattern"] == NOT_BLANK
