"""GET /openapi.json: the API described from the protocol dataclasses themselves (shared.protocol).

Nothing here restates a field: schemas come from ``shared.fields.json_schema``, so the document
cannot drift from what the server parses and sends.
"""

from __future__ import annotations

import functools
from typing import Any, Dict

from backend import __version__
from shared.fields import json_schema
from shared.protocol import (
    API_PREFIX,
    EVENT_PROGRESS,
    EVENT_STATUS,
    IMAGE_NAMES,
    MAX_UPLOAD_BYTES,
    PROTOCOL_VERSION,
    ErrorResponse,
    GenerateRequest,
    Health,
    JobCreated,
    JobList,
    JobStatus,
    ModelList,
    ProgressEvent,
    ReblendRequest,
)

MESSAGES = (
    GenerateRequest,
    ReblendRequest,
    JobCreated,
    JobStatus,
    JobList,
    ProgressEvent,
    Health,
    ModelList,
    ErrorResponse,
)


# A request the tiny test model runs in about a second; also what fuzzers start from.
GENERATE_EXAMPLE = {
    "kind": "generate",
    "foreground_prompt": "a wine glass",
    "background_prompt": "a wooden table at dusk",
    "width": 64,
    "height": 64,
    "steps": 2,
    "seed": 42,
    "blend": "generative",
}


def _ref(name: str) -> Dict[str, str]:
    return {"$ref": "#/components/schemas/" + name}


def _json_body(schema: Dict[str, Any], description: str) -> Dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> Dict[str, Any]:
    reasons = {
        400: "The request broke the protocol; 'field' names the culprit.",
        401: "A bearer token is required or wrong.",
        404: "No such job or image.",
        413: "The body is larger than %d bytes." % MAX_UPLOAD_BYTES,
        415: "The body is not JSON.",
        429: "The queue is full; try again later.",
        503: "The model could not be loaded.",
    }
    out = {str(s): _json_body(_ref("ErrorResponse"), reasons[s]) for s in statuses}
    out["500"] = _json_body(_ref("ErrorResponse"), "Unexpected failure; the message carries a log id.")
    return out


def _op(summary: str, op_id: str, responses: Dict[str, Any], **extra: Any) -> Dict[str, Any]:
    op = {"summary": summary, "operationId": op_id, "responses": responses}
    op.update(extra)
    return op


def _sse_event(name: str, message: str) -> Dict[str, Any]:
    """One Server-Sent Event (OpenAPI 3.1: the stream's schema describes each event)."""
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"const": name},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": _ref(message),
            },
        },
    }


_ID_PARAM = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "Job id.",
    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
}


@functools.lru_cache(maxsize=1)
def openapi_document() -> Dict[str, Any]:
    components: Dict[str, Any] = {}
    for cls in MESSAGES:
        components[cls.__name__] = json_schema(cls, components)
    v = API_PREFIX
    job_request = {
        "oneOf": [_ref("GenerateRequest"), _ref("ReblendRequest")],
        "discriminator": {
            "propertyName": "kind",
            "mapping": {
                "generate": "#/components/schemas/GenerateRequest",
                "reblend": "#/components/schemas/ReblendRequest",
            },
        },
    }
    paths: Dict[str, Any] = {
        v + "/health": {
            "get": _op(
                "Server and model state",
                "getHealth",
                {"200": _json_body(_ref("Health"), "Health.")},
                security=[],
            )
        },
        v + "/models": {
            "get": _op(
                "Known models",
                "listModels",
                {"200": _json_body(_ref("ModelList"), "Models."), **_errors(401)},
            )
        },
        v + "/jobs": {
            "post": _op(
                "Queue a generate or re-blend job",
                "createJob",
                {"202": _json_body(_ref("JobCreated"), "Queued."), **_errors(400, 401, 413, 415, 429, 503)},
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": job_request, "example": GENERATE_EXAMPLE}},
                },
            ),
            "get": _op(
                "Recent jobs, newest first",
                "listJobs",
                {"200": _json_body(_ref("JobList"), "Jobs."), **_errors(400, 401)},
                parameters=[
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
                    }
                ],
            ),
        },
        v + "/jobs/{id}": {
            "parameters": [_ID_PARAM],
            "get": _op(
                "A job's status",
                "getJob",
                {"200": _json_body(_ref("JobStatus"), "Status."), **_errors(401, 404)},
            ),
            "delete": _op(
                "Cancel a job (queued: removed; running: stops within one step)",
                "cancelJob",
                {
                    "200": _json_body(_ref("JobStatus"), "Status after the cancel request."),
                    **_errors(401, 404),
                },
            ),
        },
        v + "/jobs/{id}/events": {
            "parameters": [_ID_PARAM],
            "get": _op(
                "Server-Sent Events: 'status' (JobStatus) first and on every state change, 'progress' "
                "(ProgressEvent) per step; ends after a final status",
                "jobEvents",
                {
                    "200": {
                        "description": "Event stream.",
                        "content": {
                            "text/event-stream": {
                                "schema": {
                                    "oneOf": [
                                        _sse_event(EVENT_STATUS, "JobStatus"),
                                        _sse_event(EVENT_PROGRESS, "ProgressEvent"),
                                    ],
                                }
                            }
                        },
                    },
                    **_errors(401, 404),
                },
            ),
        },
        v + "/jobs/{id}/images/{name}.png": {
            "parameters": [
                _ID_PARAM,
                {
                    "name": "name",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "enum": list(IMAGE_NAMES)},
                },
            ],
            "get": _op(
                "A result image (the foreground is RGBA)",
                "getJobImage",
                {
                    "200": {
                        "description": "PNG.",
                        "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    **_errors(401, 404),
                },
            ),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "LayerFusion backend",
            "version": __version__,
            "description": "Protocol version %s." % PROTOCOL_VERSION,
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
