"""Where the plugin gets the wire protocol from: the copy install.py ships, else the repo's ``shared``.

install.py copies the repo's ``shared/`` package to ``layerfusion/_shared``; a checkout run straight
from the repo (tests, development) finds ``shared`` two levels above this package instead.
"""
import dataclasses
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Dict, Type, TypeVar

try:  # the copy shipped next to the plugin
    from ._shared import fields, protocol, sizes  # type: ignore[import-not-found]
except ImportError:  # running from the repository
    _REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if _REPO not in sys.path:
        sys.path.append(_REPO)
    from shared import fields, protocol, sizes  # type: ignore[no-redef]

T = TypeVar("T")

ProtocolError = fields.ProtocolError
to_json = fields.to_json


def parse_response(cls: Type[T], data: Any) -> T:
    """Parse a server answer, ignoring fields this plugin version does not know (a newer server)."""
    if isinstance(data, dict):
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        data = {k: v for k, v in data.items() if k in known}
    return fields.parse(cls, data)


def validated(request: Any) -> Dict[str, Any]:
    """The JSON body of a request, checked by the same rules the server applies (ProtocolError)."""
    body = to_json(request)
    protocol.parse_job_request(body)
    return body


@dataclass(frozen=True)
class Body:
    """A job request as it goes out: its kind and its JSON. A body with uploads is megabytes of base64,
    so it is checked and serialized on Qt's thread pool, not on the UI thread."""

    kind: str
    json: bytes


def serialized(body: Dict[str, Any]) -> Body:
    return Body(str(body["kind"]), json.dumps(body).encode("utf-8"))


__all__ = ["fields", "protocol", "sizes", "ProtocolError", "to_json", "parse_response", "validated", "Body",
           "serialized"]
