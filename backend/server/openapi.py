"""GET /openapi.json: the API described from the protocol dataclasses themselves (shared.protocol).

Nothing here restates a field: schemas come from ``shared.fields.json_schema``, so the document
cannot drift from what the server parses and sends. It describes the server as configured: bearer
security (and the 401 answers) only when a token is set.
"""

from __future__ import annotations

import functools
from typing import Any, Dict

from backend import __version__
from shared.fields import json_schema
from shared.protocol import (
    API_PREFIX,
    CLIENT_HEADER,
    EVENT_PROGRESS,
    EVENT_STATUS,
    IMAGE_NAMES,
    JOB_REQUESTS,
    MAX_CLIENT_ID,
    MAX_UPLOAD_BYTES,
    PROTOCOL_VERSION,
    ErrorResponse,
    Health,
    JobCreated,
    JobList,
    JobStatus,
    ModelList,
    ProgressEvent,
)

MESSAGES = (
    *JOB_REQUESTS.values(),
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


_REASONS = {
    400: "The body breaks the schema; 'field' names the culprit.",
    401: "A bearer token is required or wrong.",
    404: "No such job or image.",
    413: "The body is larger than %d bytes." % MAX_UPLOAD_BYTES,
    415: "The body is not JSON.",
    422: "The body fits the schema but cannot be used: an uploaded PNG that does not decode, images "
    "of different sizes, more pixels than the model takes, a prior layer the model lacks.",
    429: "The queue is full; try again later (see Retry-After).",
    503: "The model could not be loaded, or the results folder cannot be written.",
    507: "The results folder is full.",
}


def _errors(auth: bool, *statuses: int) -> Dict[str, Any]:
    """The error answers of an operation: ``statuses``, 401 when a token is required, and 500."""
    codes = sorted(set(statuses) | ({401} if auth else set()))
    out = {str(s): _json_body(_ref("ErrorResponse"), _REASONS[s]) for s in codes}
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


# What a client can do with the id of a job it created (tools such as schemathesis follow these);
# the event stream is left out, as it lasts as long as the job.
_JOB_LINKS = {
    name: {"operationId": op, "parameters": {"id": "$response.body#/id"}}
    for name, op in (
        ("status", "getJob"),
        ("cancel", "cancelJob"),
        ("delete", "deleteJob"),
    )
}


@functools.lru_cache(maxsize=2)
def openapi_document(token_required: bool = False) -> Dict[str, Any]:
    auth = token_required
    components: Dict[str, Any] = {}
    for cls in MESSAGES:
        components[cls.__name__] = json_schema(cls, components)
    v = API_PREFIX
    job_request = {
        "oneOf": [_ref(cls.__name__) for cls in JOB_REQUESTS.values()],
        "discriminator": {
            "propertyName": "kind",
            "mapping": {kind.value: _ref(cls.__name__)["$ref"] for kind, cls in JOB_REQUESTS.items()},
        },
    }
    paths: Dict[str, Any] = {
        v + "/health": {
            "get": _op(
                "Server and model state",
                "getHealth",
                {"200": _json_body(_ref("Health"), "Health.")},
                **({"security": []} if auth else {}),
            )
        },
        v + "/models": {
            "get": _op(
                "Known models",
                "listModels",
                {"200": _json_body(_ref("ModelList"), "Models."), **_errors(auth)},
            )
        },
        v + "/jobs": {
            "post": _op(
                "Queue a generate or re-blend job",
                "createJob",
                {
                    "202": {
                        **_json_body(_ref("JobCreated"), "Queued."),
                        "headers": {"Location": {"description": "The job's URL path.", "schema": {"type": "string"}}},
                        "links": _JOB_LINKS,
                    },
                    **_errors(auth, 400, 413, 415, 422, 429, 503, 507),
                },
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": job_request, "example": GENERATE_EXAMPLE}},
                },
                parameters=[
                    {
                        "name": CLIENT_HEADER,
                        "in": "header",
                        "required": False,
                        "description": "Who sends the job: jobs are queued in arrival order per client and taken "
                        "round-robin between clients. Without it the peer address is the client.",
                        "schema": {"type": "string", "maxLength": MAX_CLIENT_ID},
                    }
                ],
            ),
            "get": _op(
                "Recent jobs, newest first",
                "listJobs",
                {"200": _json_body(_ref("JobList"), "Jobs."), **_errors(auth, 400)},
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
                {"200": _json_body(_ref("JobStatus"), "Status."), **_errors(auth, 404)},
            ),
            "delete": _op(
                "Delete a job: its record, results and uploads; a queued or running job is cancelled "
                "first. Afterwards the job and its images answer 404. To stop a job and keep its "
                "record, POST .../cancel instead.",
                "deleteJob",
                {"204": {"description": "Deleted."}, **_errors(auth, 404)},
            ),
        },
        v + "/jobs/{id}/cancel": {
            "parameters": [_ID_PARAM],
            "post": _op(
                "Cancel a job and keep its record: a queued one ends at once, a running one within "
                "one step (watch its events); a finished one is left as it is",
                "cancelJob",
                {
                    "200": _json_body(_ref("JobStatus"), "Status after the cancel request."),
                    **_errors(auth, 404),
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
                    **_errors(auth, 404),
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
                    **_errors(auth, 404),
                },
            ),
        },
    }
    document: Dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "LayerFusion backend",
            "version": __version__,
            "description": "Protocol version %s." % PROTOCOL_VERSION,
        },
        "paths": paths,
        "components": {"schemas": components},
    }
    if auth:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
    return document
