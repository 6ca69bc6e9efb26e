"""Bearer-token check: with a token configured, every request except health must carry it."""

from __future__ import annotations

import hmac
from typing import Awaitable, Callable, Optional

from aiohttp import web

from shared.fields import ProtocolError
from shared.protocol import API_PREFIX

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Health stays open so a client can tell "server is up but wants a token" from "no server".
OPEN_PATHS = frozenset({API_PREFIX + "/health"})


class Unauthorized(ProtocolError):
    """Raised for a missing or wrong token; the error middleware answers 401."""

    status = 401


def make_auth_middleware(token: Optional[str]) -> Callable:
    expected = ("Bearer " + token).encode() if token else None

    @web.middleware
    async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected is None or request.path in OPEN_PATHS:
            return await handler(request)
        given = request.headers.get("Authorization", "").encode()
        # Constant-time comparison: the token must not leak through response timing.
        if not hmac.compare_digest(given, expected):
            code = "unauthorized" if given else "missing_token"
            raise Unauthorized(code, "this server needs 'Authorization: Bearer <token>'")
        return await handler(request)

    return auth_middleware
