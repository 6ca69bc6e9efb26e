"""The HTTP handlers of the API in DESIGN.md; each one answers from the loop without model work."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from backend.server.catalog import model_list
from backend.server.config import ServerConfig
from backend.server.intake import read_job_request
from backend.server.openapi import openapi_document
from backend.server.service import JobService
from shared.fields import ProtocolError, to_json
from shared.protocol import (
    API_PREFIX,
    CLIENT_HEADER,
    EVENT_STATUS,
    MAX_CLIENT_ID,
    JobCreated,
    JobList,
    JobState,
    job_path,
)

SERVICE = web.AppKey("service", JobService)
CONFIG = web.AppKey("config", ServerConfig)

DEFAULT_LIST_LIMIT = 50
MAX_LIST_LIMIT = 1000
# A comment line this often keeps proxies and idle-timeouts from closing a quiet event stream.
KEEPALIVE_S = 15.0


def _json(body: Any, status: int = 200, **kwargs: Any) -> web.Response:
    return web.json_response(to_json(body), status=status, **kwargs)


def _job(request: web.Request):
    job = request.app[SERVICE].get(request.match_info["id"])
    if job is None:
        raise web.HTTPNotFound(text="no job with id %r" % request.match_info["id"])
    return job


async def health(request: web.Request) -> web.Response:
    return _json(request.app[SERVICE].health())


async def models(request: web.Request) -> web.Response:
    config, engine = request.app[CONFIG], request.app[SERVICE].engine
    loop = asyncio.get_running_loop()
    listing = await loop.run_in_executor(None, model_list, config.loading.model, config.loading.models_dir,
                                         engine.lora_library, engine.architecture.name)
    return _json(listing)


async def create_job(request: web.Request) -> web.Response:
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="send the job as JSON (Content-Type: application/json)")
    body = await request.read()  # aiohttp enforces client_max_size here: 413 when larger
    service = request.app[SERVICE]
    loop = asyncio.get_running_loop()
    # JSON and base64 PNG decoding of big uploads would stall every other request on the loop.
    job_request = await loop.run_in_executor(None, read_job_request, body, service.engine)
    job = service.submit(job_request, client_of(request))
    return _json(
        JobCreated(id=job.id, state=JobState.queued), status=202, headers={"Location": job_path(job.id)}
    )


def client_of(request: web.Request) -> str:
    """Whose job this is, for fair queueing: the client id the plugin sends, else the peer address."""
    given = request.headers.get(CLIENT_HEADER, "").strip()
    if given:
        if len(given) > MAX_CLIENT_ID or not given.isprintable():
            raise ProtocolError("invalid_header", "%s must be at most %d printable characters"
                                % (CLIENT_HEADER, MAX_CLIENT_ID), CLIENT_HEADER)
        return given
    return "peer:%s" % (request.remote or "")


async def list_jobs(request: web.Request) -> web.Response:
    raw = request.query.get("limit", str(DEFAULT_LIST_LIMIT))
    try:
        limit = int(raw)
    except ValueError:
        raise ProtocolError("invalid_field", "'limit' must be an integer", "limit") from None
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise ProtocolError("invalid_field", "'limit' must be within 1..%d" % MAX_LIST_LIMIT, "limit")
    return _json(JobList(jobs=request.app[SERVICE].recent(limit)))


async def get_job(request: web.Request) -> web.Response:
    return _json(request.app[SERVICE].status(_job(request)))


async def cancel_job(request: web.Request) -> web.Response:
    return _json(request.app[SERVICE].cancel(_job(request)))


async def delete_job(request: web.Request) -> web.Response:
    request.app[SERVICE].delete(_job(request))
    return web.Response(status=204)


async def job_image(request: web.Request) -> web.StreamResponse:
    job = _job(request)
    name = request.match_info["name"]
    path = request.app[SERVICE].store.image_file(job.id, name) if name in job.images else None
    if path is None:
        raise web.HTTPNotFound(text="job %s has no image %r" % (job.id, name))
    # Results never change once written.
    return web.FileResponse(
        path, headers={"Content-Type": "image/png", "Cache-Control": "private, max-age=86400"}
    )


async def job_events(request: web.Request) -> web.StreamResponse:
    service = request.app[SERVICE]
    job = _job(request)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    # Subscribe before the first status goes out, so no change between the two is missed.
    queue = service.book.subscribe(job)
    try:
        status = to_json(service.status(job))
        await _send(response, EVENT_STATUS, status)
        if job.state.final:
            return response
        while True:
            try:
                name, data, last = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except asyncio.TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if name:  # the server is shutting down when it is empty
                await _send(response, name, data)
            if last:
                break
    except ConnectionResetError:
        return response  # the client left; its job goes on
    finally:
        service.book.unsubscribe(job, queue)
    await response.write_eof()
    return response


async def _send(response: web.StreamResponse, name: str, data: Any) -> None:
    payload = json.dumps(data, separators=(",", ":"))
    await response.write(("event: %s\ndata: %s\n\n" % (name, payload)).encode("utf-8"))


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(bool(request.app[CONFIG].token)))


def add_routes(app: web.Application) -> None:
    v = API_PREFIX
    app.router.add_get(v + "/health", health)
    app.router.add_get(v + "/models", models)
    app.router.add_post(v + "/jobs", create_job)
    app.router.add_get(v + "/jobs", list_jobs)
    app.router.add_get(v + "/jobs/{id}", get_job)
    app.router.add_delete(v + "/jobs/{id}", delete_job)
    app.router.add_post(v + "/jobs/{id}/cancel", cancel_job)
    app.router.add_get(v + "/jobs/{id}/events", job_events)
    app.router.add_get(v + "/jobs/{id}/images/{name}.png", job_image)
    app.router.add_get("/openapi.json", openapi)
