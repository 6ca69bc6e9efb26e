"""A model that cannot load: the server still answers, health says why, and jobs are refused."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Dict

import aiohttp

from tests.support.api import generate_body
from tests.support.backend_process import BackendProcess


async def _probe(url: str) -> Dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/v1/health") as response:
            health = await response.json()
        async with session.post(url + "/v1/jobs", json=generate_body()) as response:
            post = (response.status, await response.json())
        async with session.get(url + "/v1/models") as response:
            models = await response.json()
    return {"health": health, "post": post, "models": models}


def test_model_load_failure_is_reported(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-checkpoint.safetensors")
    backend = BackendProcess(output_dir=tmp_path / "out", model=missing)
    with backend.start(allow_error=True):
        result = asyncio.run(_probe(backend.url))
    health = result["health"]
    assert health["state"] == "error" and health["error"], health
    assert health["model"] == missing
    status, body = result["post"]
    assert status == 503 and body["error"]["code"] == "model_unavailable"
    listed = {m["name"]: m for m in result["models"]["models"]}
    assert listed[missing]["available"] is False and listed[missing]["kind"] == "single_file"
