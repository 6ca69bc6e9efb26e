"""Running the server app in this process with aiohttp's test server (real engine, real sockets)."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Optional

from aiohttp.test_utils import TestClient, TestServer

from backend.models.options import LoadOptions
from backend.server.app import create_app
from backend.server.config import ServerConfig


@asynccontextmanager
async def app_client(
    output_dir: Path, *, wait_ready: bool = True, loading: Optional[LoadOptions] = None, **config: Any
) -> AsyncIterator[TestClient]:
    """A test client of the app for the tiny model (or ``loading``), ``ServerConfig(output_dir=..., **config)``."""
    app = create_app(ServerConfig(loading=loading or LoadOptions(model="tiny"), output_dir=output_dir, port=0,
                                  **config))
    async with TestClient(TestServer(app)) as client:
        if wait_ready:
            deadline = time.monotonic() + 900  # a hang guard: building the model on a loaded machine is slow
            while True:
                health = await (await client.get("/v1/health")).json()
                if health["state"] == "ready":
                    break
                assert health["state"] == "loading" and time.monotonic() < deadline, health
                await asyncio.sleep(0.1)
        yield client
