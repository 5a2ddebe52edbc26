"""Strict JSON request bodies: what Python's json module would accept but no answer could be built from is
refused as invalid JSON (422), never parsed into values that fail later, in a model or an error handler.

Refused: bytes that are not UTF-8; NaN, Infinity and numbers too large for a float (1e999); integers of more
than MAX_INT_DIGITS digits; nesting deeper than MAX_DEPTH; strings or keys holding a lone surrogate (`"\\ud800"`
is valid JSON but no UTF-8 text). The route class is FastAPI's documented way to change how a body is read:
FastAPI turns a `json.JSONDecodeError` from `Request.json()` into its usual 422 `json_invalid` error.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
MAX_DEPTH = 32  # the deepest valid body here is 3 levels; pydantic's errors and their encoding recurse per level
MAX_INT_DIGITS = 32  # the largest valid integer (a seed) has 19 digits


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits; at most {MAX_INT_DIGITS} are accepted")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of a float's range")
    return value


def _constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


DECODER = json.JSONDecoder(parse_int=_int, parse_float=_float, parse_constant=_constant)  # built once, not per body


def _check(value: Any) -> None:
    """Depth and lone surrogates, walked without recursion (a deep body must not be what exhausts the stack)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                for key in item:
                    _check_text(key)
                item = item.values()
            stack.extend((child, depth + 1) for child in item)


def _check_text(text: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"a string holds a lone surrogate (\\u{ord(text[exc.start]):04x})") from exc


def parse_strict(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise json.JSONDecodeError(f"the body is not UTF-8 (byte {exc.start})", "", 0) from None
    try:
        value = DECODER.decode(text)
        # UTF-8 text holds no surrogates: only a `\ud800`-style escape makes one. And nesting needs brackets. So
        # most bodies need no walk at all.
        if text.count("[") + text.count("{") > MAX_DEPTH or SURROGATE_ESCAPE.search(text):
            _check(value)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise json.JSONDecodeError(f"nested deeper than {MAX_DEPTH} levels", "", 0) from None
    except ValueError as exc:
        raise json.JSONDecodeError(str(exc), "", 0) from None
    return value


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_strict(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive, request._send))

        return strict_handler
