"""The speller's compiled beam step (the functions of beam_kernels.py), from the first of: the module compiled
ahead of time from beam_kernels.py (`_beam_step_aot`, built by beam_step_aot.py: the CPU image's, which
carries no compiler), or numba's JIT. Neither is an error at import, so at the server's start.

The module compiled ahead of time is used only when built from this very beam_kernels.py (it records the
file's digest): one left behind by an edit would otherwise serve the old step. Its functions take the one
signature they were compiled for and check nothing (an array of another dtype, rank or layout is read as if
it were right: a wrong answer or a crash), so each call here checks its arrays first, as numba's JIT does.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import re
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from app.adapters.speller import beam_kernels

AOT_MODULE = "app.adapters.speller._beam_step_aot"
KERNELS = tuple(beam_kernels.SIGNATURES)

log = logging.getLogger(__name__)


def source_digest() -> int:
    """beam_kernels.py's SHA-256, first 60 bits (an int64 the compiled module returns as a constant)."""
    return int(hashlib.sha256(Path(beam_kernels.__file__).read_bytes()).hexdigest()[:15], 16)


def ahead_of_time(path: Path | None = None) -> SimpleNamespace | None:
    """The functions of the module compiled ahead of time (installed beside this one, or the file `path`), each
    checking its arrays; None if it is not there or was built from another beam_kernels.py."""
    try:
        if path is None:
            module = importlib.import_module(AOT_MODULE)
        else:
            spec = importlib.util.spec_from_file_location(AOT_MODULE, path)
            assert spec is not None and spec.loader is not None, path
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
    except ImportError:
        return None
    if module.source_digest() != source_digest():
        log.warning("%s was built from another beam_kernels.py: not used (rebuild it)", module.__file__)
        return None
    return SimpleNamespace(**{name: checked(getattr(module, name), beam_kernels.SIGNATURES[name]) for name in KERNELS})


def just_in_time() -> SimpleNamespace | None:
    """beam_kernels.py's functions compiled by numba at their first call, if numba is installed."""
    if beam_kernels.njit is None:
        return None
    return SimpleNamespace(**{name: getattr(beam_kernels, name) for name in KERNELS})


def array_arguments(signature: str) -> list[tuple[np.dtype, int] | None]:
    """Each argument's dtype and rank in a signature of beam_kernels.SIGNATURES (None for a scalar); every
    array there is C-contiguous."""
    arguments = signature[signature.rindex("(") + 1 : -1]  # the return type comes first, with its own brackets
    return [
        (np.dtype("bool" if name == "boolean" else name), dims.count(",") + 1) if dims else None
        for name, dims in re.findall(r"(\w+)(\[[^\]]*\])?", arguments)
    ]


def checked(func: Callable[..., Any], signature: str) -> Callable[..., Any]:
    """`func` (compiled for `signature` alone), raising TypeError for an array it was not compiled for. Written
    for speed: a step checks some twenty arrays, at about 0.2 µs each."""
    expected = array_arguments(signature)
    arrays = [(i, spec[0], spec[1]) for i, spec in enumerate(expected) if spec is not None]
    count, name, ndarray = len(expected), func.__name__, np.ndarray

    def call(*args: Any) -> Any:
        if len(args) != count:
            raise TypeError(f"{name} takes {count} arguments, not {len(args)}")
        for i, dtype, ndim in arrays:
            value = args[i]
            if (
                type(value) is not ndarray
                or (value.dtype is not dtype and value.dtype != dtype)
                or value.ndim != ndim
                or not value.flags.c_contiguous
            ):
                raise TypeError(f"{name}: argument {i} must be a C-contiguous {dtype} array of rank {ndim}")
        return func(*args)

    call.__name__ = call.__qualname__ = name
    return call


def _implementation() -> tuple[str, SimpleNamespace]:
    for name, load in (("aot", ahead_of_time), ("jit", just_in_time)):
        functions = load()
        if functions is not None:
            return name, functions
    raise ImportError(
        f"the speller's beam step is not compiled: {AOT_MODULE} is missing or stale and numba is not installed "
        "(pip install 'charserve[cpu]' for numba, or build the module: python -m app.adapters.speller.beam_step_aot)"
    )


# What the speller calls (as attributes of this module, so that a bench or test can swap them).
IMPLEMENTATION, _functions = _implementation()  # "aot" or "jit"
extend_edits_row = _functions.extend_edits_row
extend_edits = _functions.extend_edits
beam_step = _functions.beam_step
live_counts = _functions.live_counts
live_layout = _functions.live_layout
