"""Turning a POST /v1/jobs body into a checked JobRequest (runs in a thread: uploads can be large)."""

from __future__ import annotations

import json

from backend.pipeline.engine import Engine
from shared.fields import ProtocolError
from shared.protocol import JobRequest, parse_job_request


def read_job_request(body: bytes, engine: Engine) -> JobRequest:
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProtocolError("invalid_json", "the body is not UTF-8 text") from None
    except ValueError as err:
        raise ProtocolError("invalid_json", "the body is not valid JSON: %s" % err) from None
    request = parse_job_request(data)
    # Model limits (e.g. the tiny model's pixel budget) and full decoding of uploads, so a corrupt
    # upload is a 400 naming its field rather than a failed job later.
    engine.check(request)
    return request
