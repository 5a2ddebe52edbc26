"""Optional API keys: with CHARSERVE_API_KEYS naming a file of SHA-256 hashes of keys (hex, one a line), every
request must carry a key whose hash is listed, as `Authorization: Bearer <key>` or `X-API-Key: <key>`.

Only hashes are stored, so the file reveals no key. Each request's hash is compared with every listed hash in
constant time (hmac.compare_digest), so neither the timing of an answer nor its order says how close a guess
was. The refusal comes before the body is read.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.http_middleware import HttpMiddleware
from app.api.middleware import ALWAYS_ANSWERED

SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class KeyFileError(ValueError):
    pass


def load_key_hashes(path: Path) -> tuple[bytes, ...]:
    """The file's hashes; blank lines and `#` comments are skipped. A malformed line stops start-up, named."""
    hashes = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip().lower()
        if not line:
            continue
        if not SHA256_HEX.fullmatch(line):
            raise KeyFileError(f"{path}:{number}: not a SHA-256 hex digest (64 hex digits)")
        hashes.append(line.encode("ascii"))
    if not hashes:
        raise KeyFileError(f"{path}: no key hashes; every request would be refused")
    return tuple(hashes)


def presented_key(scope: Scope) -> bytes | None:
    headers = dict(scope["headers"])
    authorization = headers.get(b"authorization", b"")
    scheme, _, token = authorization.partition(b" ")
    if scheme.lower() == b"bearer" and token.strip():
        return token.strip()
    return headers.get(b"x-api-key") or None


class ApiKeyMiddleware(HttpMiddleware):
    def __init__(self, app: ASGIApp, key_hashes: tuple[bytes, ...], open_probes: bool) -> None:
        super().__init__(app)
        self.key_hashes = key_hashes
        self.open_paths = ALWAYS_ANSWERED if open_probes else frozenset()

    def allowed(self, key: bytes) -> bool:
        digest = hashlib.sha256(key).hexdigest().encode("ascii")
        matches = [hmac.compare_digest(digest, known) for known in self.key_hashes]  # every one, whatever matches
        return any(matches)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        key = presented_key(scope)
        if key is None or not self.allowed(key):
            detail = "a valid API key is required: Authorization: Bearer <key> or X-API-Key: <key>"
            if key is not None:
                detail = "the API key is not valid"
            headers = {"WWW-Authenticate": "Bearer", "Connection": "close"}
            await JSONResponse({"detail": detail}, status_code=401, headers=headers)(scope, receive, send)
            return
        await self.app(scope, receive, send)
