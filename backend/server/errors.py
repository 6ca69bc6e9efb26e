"""Every error leaves the server as JSON ``{"error": {"code", "message", "field"?}}``.

Client mistakes get their 4xx; anything unexpected is logged with a fresh id and answered 500 with
only that id, so no traceback or internal detail ever reaches the wire.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Awaitable, Callable, Dict, Optional

from aiohttp import web

from shared.fields import ProtocolError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES: Dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "queue_full",
}
# Headers an aiohttp HTTP exception carries that a client needs even on a JSON error (Allow on 405).
_KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")


def error_response(
    status: int,
    code: str,
    message: str,
    field: Optional[str] = None,
    headers: Optional[Dict[str, str]] = None,
) -> web.Response:
    return web.json_response(ProtocolError(code, message, field).to_json(), status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProtocolError as err:
        headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
        if err.status == 429:
            headers = {"Retry-After": "5"}
        return error_response(err.status, err.code, err.message, err.field, headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and the like are not errors
        headers = {k: exc.headers[k] for k in _KEPT_HEADERS if k in exc.headers}
        code = _HTTP_CODES.get(exc.status, "http_%d" % exc.status)
        message = exc.text if exc.text and not exc.text.startswith("%d:" % exc.status) else exc.reason
        return error_response(exc.status, code, message or exc.reason, headers=headers or None)
    except (asyncio.CancelledError, ConnectionResetError):
        raise  # the client went away; nothing to answer
    except Exception:
        error_id = uuid.uuid4().hex[:12]
        log.exception("error %s while answering %s %s", error_id, request.method, request.path)
        return error_response(500, "internal", "internal server error; the server log has id %s" % error_id)
