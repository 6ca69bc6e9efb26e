"""Turning a POST /v1/jobs body into a checked JobRequest (runs in a thread: uploads can be large).

The protocol's own checks read PNG headers only; here each uploaded PNG is also decoded in full, so
a truncated or corrupt upload is refused with a 400 naming its field instead of failing the job later.
"""

from __future__ import annotations

import base64
import io
import json
import warnings
from typing import Optional

from PIL import Image

from backend.pipeline.engine import Engine
from shared.fields import ProtocolError
from shared.protocol import JobRequest, ReblendRequest, parse_job_request


def read_job_request(body: bytes, engine: Optional[Engine]) -> JobRequest:
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProtocolError("invalid_json", "the body is not UTF-8 text") from None
    except ValueError as err:
        raise ProtocolError("invalid_json", "the body is not valid JSON: %s" % err) from None
    request = parse_job_request(data)
    if isinstance(request, ReblendRequest):
        for name in ("foreground_png", "background_png"):
            _decode_fully(getattr(request, name), name)
    if engine is not None:
        engine.check(request)  # model-specific limits (e.g. the tiny model's pixel budget)
    return request


def _decode_fully(text: str, field: str) -> None:
    # Sizes were already bounded by the header check, so decoding cannot explode in memory.
    data = base64.b64decode(text)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                image.load()
    except Exception as err:  # PIL raises many kinds for broken data
        raise ProtocolError(
            "invalid_image", "'%s' could not be decoded: %s" % (field, str(err) or type(err).__name__), field
        ) from None
