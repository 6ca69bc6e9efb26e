"""A small asyncio client of the backend's HTTP API for tests: jobs, the event stream, images."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from dataclasses import dataclass
from typing import Any, AsyncIterator, Dict, List, Optional, Tuple

import aiohttp
from PIL import Image

from shared.protocol import CLIENT_HEADER

Event = Tuple[str, Dict[str, Any]]
FINAL_STATES = ("done", "failed", "cancelled")
# How long a test waits for a state it needs before it gives up: a guard against a hang on a loaded
# machine, never a timing assertion.
WAIT_S = 300.0


async def final_status(client: Any, job_id: str) -> Dict[str, Any]:
    """A job's status once final, read from its event stream (it ends with the final status); ``client``
    is aiohttp's TestClient or a session on the server's URL."""
    async with client.get("/v1/jobs/%s/events" % job_id) as response:
        assert response.status == 200
        text = await response.text()
    status = json.loads([line for line in text.splitlines() if line.startswith("data:")][-1][5:])
    assert status["state"] in FINAL_STATES, status
    return status


def generate_body(seed: int = 1, size: int = 64, steps: int = 2, **extra: Any) -> Dict[str, Any]:
    body = {
        "kind": "generate",
        "foreground_prompt": "a wine glass",
        "background_prompt": "a wooden table",
        "width": size,
        "height": size,
        "steps": steps,
        "seed": seed,
    }
    body.update(extra)
    return body


class ApiError(AssertionError):
    pass


@dataclass
class Api:
    session: aiohttp.ClientSession
    url: str
    token: Optional[str] = None
    client: Optional[str] = None  # sent as the client id fair queueing goes by

    @property
    def headers(self) -> Dict[str, str]:
        headers = {"Authorization": "Bearer " + self.token} if self.token else {}
        if self.client:
            headers[CLIENT_HEADER] = self.client
        return headers

    async def get_json(self, path: str, expect: int = 200) -> Any:
        async with self.session.get(self.url + path, headers=self.headers) as response:
            return await self._json(response, expect)

    async def submit(self, body: Dict[str, Any]) -> str:
        async with self.session.post(self.url + "/v1/jobs", json=body, headers=self.headers) as response:
            data = await self._json(response, 202)
        assert data["state"] == "queued"
        return data["id"]

    async def cancel(self, job_id: str) -> Dict[str, Any]:
        url = self.url + "/v1/jobs/%s/cancel" % job_id
        async with self.session.post(url, headers=self.headers) as response:
            return await self._json(response, 200)

    async def delete(self, job_id: str) -> None:
        async with self.session.delete(self.url + "/v1/jobs/" + job_id, headers=self.headers) as response:
            assert response.status == 204, await response.text()

    async def status(self, job_id: str) -> Dict[str, Any]:
        return await self.get_json("/v1/jobs/" + job_id)

    async def events(self, job_id: str) -> AsyncIterator[Event]:
        """The job's Server-Sent Events as (name, data) until the stream ends."""
        async with self.session.get(
            self.url + "/v1/jobs/%s/events" % job_id,
            headers=self.headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=120),
        ) as response:
            assert response.status == 200, await response.text()
            assert response.content_type == "text/event-stream"
            name, data = "message", []
            async for raw in response.content:
                line = raw.decode("utf-8").rstrip("\r\n")
                if not line:
                    if data:
                        yield name, json.loads("\n".join(data))
                    name, data = "message", []
                elif line.startswith(":"):
                    continue  # keepalive comment
                elif line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())

    async def wait_state(self, job_id: str, *states: str, timeout: float = WAIT_S) -> Dict[str, Any]:
        """Polls the job until its state is in ``states``; fails if it ends otherwise, or at ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            status = await self.status(job_id)
            if status["state"] in states:
                return status
            if status["state"] in FINAL_STATES:
                raise ApiError("job %s ended %s while waiting for %s" % (job_id, status["state"], states))
            if loop.time() > deadline:
                raise ApiError("job %s still %s after %.0f s, waiting for %s"
                               % (job_id, status["state"], timeout, states))
            await asyncio.sleep(0.02)

    async def all_events(self, job_id: str) -> List[Event]:
        return [event async for event in self.events(job_id)]

    async def wait_final(self, job_id: str) -> Dict[str, Any]:
        last: Dict[str, Any] = {}
        async for name, data in self.events(job_id):
            if name == "status":
                last = data
        assert last.get("state") in ("done", "failed", "cancelled"), last
        return last

    async def image_bytes(self, path: str) -> bytes:
        async with self.session.get(self.url + path, headers=self.headers) as response:
            if response.status != 200:
                raise ApiError("%s -> %d %s" % (path, response.status, await response.text()))
            assert response.content_type == "image/png"
            return await response.read()

    async def images(self, status: Dict[str, Any]) -> Dict[str, Image.Image]:
        out = {}
        for name, path in status["images"].items():
            image = Image.open(io.BytesIO(await self.image_bytes(path)))
            image.load()
            out[name] = image
        return out

    async def _json(self, response: aiohttp.ClientResponse, expect: int) -> Any:
        text = await response.text()
        if response.status != expect:
            raise ApiError(
                "%s %s -> %d (expected %d): %s"
                % (response.method, response.url, response.status, expect, text[:500])
            )
        assert response.content_type == "application/json", response.content_type
        return json.loads(text)


class Listener:
    """Reads one job's event stream in a background task, as a second client would.

    ``started`` waits until the stream is open and its first event (the job's status) is in, so a test
    can rely on the listener being connected before it changes anything on the server.
    """

    def __init__(self, api: Api, job_id: str) -> None:
        self.job_id = job_id
        self.events: List[Event] = []
        self._first = asyncio.Event()
        self.task = asyncio.ensure_future(self._read(api))

    async def _read(self, api: Api) -> List[Event]:
        async for event in api.events(self.job_id):
            self.events.append(event)
            self._first.set()
        return self.events

    async def started(self, timeout: float = WAIT_S) -> Event:
        first = asyncio.ensure_future(self._first.wait())
        try:
            done, _ = await asyncio.wait({first, self.task}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            first.cancel()
        if not self._first.is_set():
            if self.task in done:
                self.task.result()  # the stream failed: raise its error
                raise ApiError("the event stream of %s ended without an event" % self.job_id)
            self.task.cancel()
            raise ApiError("no event from %s within %.0f s" % (self.job_id, timeout))
        return self.events[0]

    async def finished(self, timeout: float = WAIT_S) -> List[Event]:
        """Every event, once the stream has ended."""
        return await asyncio.wait_for(self.task, timeout)


def png_base64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
