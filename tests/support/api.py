"""A small asyncio client of the backend's HTTP API for tests: jobs, the event stream, images."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from typing import Any, AsyncIterator, Dict, List, Optional, Tuple

import aiohttp
from PIL import Image

Event = Tuple[str, Dict[str, Any]]


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

    @property
    def headers(self) -> Dict[str, str]:
        return {"Authorization": "Bearer " + self.token} if self.token else {}

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


def png_base64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
