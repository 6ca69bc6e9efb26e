"""Token enforcement, and refusing to listen off loopback without one."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Dict

import aiohttp

from tests.support.backend_process import BackendProcess, run_backend

TOKEN = "s3cret-token"


async def _probe(url: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:
        for label, headers in (
            ("none", {}),
            ("wrong", {"Authorization": "Bearer nope"}),
            ("basic", {"Authorization": "Basic " + TOKEN}),
            ("right", {"Authorization": "Bearer " + TOKEN}),
        ):
            for path in ("/v1/health", "/v1/models", "/v1/jobs", "/openapi.json", "/v1/jobs/" + "0" * 32):
                async with session.get(url + path, headers=headers) as response:
                    out[(label, path)] = (response.status, response.content_type, await response.json())
            async with session.post(url + "/v1/jobs", json={"kind": "generate"}, headers=headers) as response:
                out[(label, "POST")] = (response.status, response.content_type, await response.json())
    return out


def test_token_is_required_except_for_health(tmp_path: Path) -> None:
    with BackendProcess(output_dir=tmp_path / "out", token=TOKEN) as backend:
        result = asyncio.run(_probe(backend.url))
    for label in ("none", "wrong", "basic"):
        status, ctype, body = result[(label, "/v1/health")]
        assert status == 200 and body["auth"] is True
        for path in ("/v1/models", "/v1/jobs", "/openapi.json", "/v1/jobs/" + "0" * 32, "POST"):
            status, ctype, body = result[(label, path)]
            assert status == 401, (label, path, body)
            assert ctype == "application/json" and body["error"]["code"] in ("unauthorized", "missing_token")
    assert result[("right", "/v1/models")][0] == 200
    assert result[("right", "/v1/jobs")][0] == 200
    assert result[("right", "/v1/jobs/" + "0" * 32)][0] == 404
    assert result[("right", "POST")][0] == 400  # through the door, then refused for the missing fields


def test_refuses_public_host_without_token(tmp_path: Path) -> None:
    for host in ("0.0.0.0", "::", "192.168.1.10"):
        done = run_backend(
            ["serve", "--host", host, "--port", "0", "--model", "tiny", "--output-dir", str(tmp_path / "out")]
        )
        assert done.returncode == 2, done.stderr
        assert "without a token" in done.stderr
