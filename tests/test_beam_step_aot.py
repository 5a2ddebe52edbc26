"""The speller's beam step compiled ahead of time (app/adapters/speller/beam_step_aot.py, the CPU image's):
the JIT's answers, arrays it was not compiled for refused, the GIL released, and used only when built from
the current source. Builds the module once (some 25 s), where numba and a C compiler are installed."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from app.adapters.speller import beam_kernels, beam_step
from app.adapters.speller.model import Speller
from app.settings import Settings
from tests.conftest import BUNDLED_MODELS, SHARED_DATA

pytestmark = pytest.mark.skipif(beam_kernels.njit is None, reason="numba is not installed: it compiles the module")

# Misspellings of the speller's other tests; with ../shared, validation misspellings besides.
WORDS = (
    "teh sentance wich recieve adress occured untill wierd thier begining problam contenpted speling korrect "
    "Ths sentense erors seperate definately accomodate goverment enviroment beleive calender tommorow"
).lower().split()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from app.adapters.speller.beam_step_aot import build, compilers_work

    if not compilers_work():
        pytest.skip("no working C and C++ compilers: numba's pycc needs both to build the module")
    return build(tmp_path_factory.mktemp("aot"))


@pytest.fixture(scope="module")
def aot(built: Path) -> SimpleNamespace:
    functions = beam_step.ahead_of_time(built)
    assert functions is not None
    return functions


def test_it_answers_as_the_jit_does(aot: SimpleNamespace) -> None:
    from bench.beam_step_aot import answers, serving, validation_words

    words = WORDS
    if (SHARED_DATA / "spelling").exists():
        words = words + validation_words(SHARED_DATA / "spelling", 200)
    speller = Speller(BUNDLED_MODELS / "speller", Settings())
    found = {}
    for name, functions in (("jit", beam_step.just_in_time()), ("aot", aot)):
        with serving(functions):  # a word a call, and batches: the rows' layouts differ
            found[name] = answers(speller, WORDS, 1), answers(speller, words, 8)
    assert found["aot"] == found["jit"]  # each word's answer and alternatives, with their scores
    assert found["aot"][0][0].candidates[0].word == "the"


def test_edit_rows_match_the_jit(aot: SimpleNamespace) -> None:
    from bench.beam_step_aot import long_extend_edits_args

    call = long_extend_edits_args(rows=500, width=12)
    assert (aot.extend_edits(*call) == beam_kernels.extend_edits(*call)).all()


def test_arrays_it_was_not_compiled_for_are_refused(aot: SimpleNamespace) -> None:
    """The compiled functions check nothing: a wrong array would be read as a right one (or crash)."""
    live = np.array([1, 2, 3])
    assert [a.tolist() for a in aot.live_layout(live, 3)] == [a.tolist() for a in beam_kernels.live_layout(live, 3)]
    for wrong in (live.astype(np.int32), live.astype(np.float64), np.repeat(live, 2)[::2], live[None, :], [1, 2, 3]):
        with pytest.raises(TypeError, match="live_layout: argument 0 must be a C-contiguous int64 array of rank 1"):
            aot.live_layout(wrong, 3)


def test_the_gil_is_released_while_it_runs(aot: SimpleNamespace) -> None:
    """As the JIT's (nogil=True): the event loop keeps answering during a step. One that held it would stop
    this thread for the whole call (pycc's wrappers do, unless built as beam_step_aot.py builds them)."""
    from bench.beam_step_aot import long_extend_edits_args, longest_pause

    call = long_extend_edits_args()
    runs = [longest_pause(aot.extend_edits, *call) for _ in range(3)]  # the best of 3: a busy host pauses threads too
    assert min(pause / seconds for pause, seconds in runs) < 0.5, runs


def test_a_module_built_from_other_source_is_not_used(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = beam_step.source_digest()
    monkeypatch.setattr(beam_step, "source_digest", lambda: real ^ 1)  # as after an edit of beam_kernels.py
    assert beam_step.ahead_of_time(built) is None
    monkeypatch.setattr(beam_step, "ahead_of_time", lambda: None)
    assert beam_step._implementation()[0] == "jit"
    monkeypatch.setattr(beam_kernels, "njit", None)  # and no numba: the server must not start
    with pytest.raises(ImportError, match="_beam_step_aot is missing or stale and numba is not installed"):
        beam_step._implementation()
