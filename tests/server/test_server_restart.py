"""Results survive a restart: a new server on the same folder serves earlier jobs by id."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Dict

import aiohttp

from tests.support.api import Api, Listener, generate_body
from tests.support.backend_process import BackendProcess


async def _make_job(backend: BackendProcess) -> Dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        api = Api(session, backend.url)
        final = await api.wait_final(await api.submit(generate_body(seed=31, steps=2)))
        return {"final": final, "png": {n: await api.image_bytes(p) for n, p in final["images"].items()}}


async def _fetch(backend: BackendProcess, job_id: str, paths: Dict[str, str]) -> Dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        api = Api(session, backend.url)
        return {
            "status": await api.status(job_id),
            "events": await api.all_events(job_id),
            "png": {n: await api.image_bytes(p) for n, p in paths.items()},
            "list": await api.get_json("/v1/jobs"),
        }


async def _status_code(backend: BackendProcess, job_id: str) -> int:
    async with aiohttp.ClientSession() as session:
        async with session.get(backend.url + "/v1/jobs/" + job_id) as response:
            return response.status


def test_restart_serves_earlier_results(tmp_path: Path) -> None:
    output = tmp_path / "out"
    with BackendProcess(output_dir=output) as first:
        made = asyncio.run(_make_job(first))
    job_id = made["final"]["id"]
    # A job record that a crashed server left "running" comes back as failed, with the reason.
    stale_id = "f" * 32
    (output / stale_id).mkdir()
    (output / stale_id / "job.json").write_text(
        json.dumps(
            {"id": stale_id, "kind": "generate", "state": "running", "params": {"seed": 1}, "created": 1.0}
        )
    )

    # A record that is not JSON (a disk hiccup, a hand edit) is skipped, not fatal.
    broken_id = "e" * 32
    (output / broken_id).mkdir()
    (output / broken_id / "job.json").write_text("{not json")

    with BackendProcess(output_dir=output) as second:
        fetched = asyncio.run(_fetch(second, job_id, made["final"]["images"]))
        stale = asyncio.run(_fetch(second, stale_id, {}))
        broken = asyncio.run(_status_code(second, broken_id))

    assert fetched["status"]["state"] == "done"
    assert fetched["status"]["params"] == made["final"]["params"]
    assert fetched["png"] == made["png"]
    assert fetched["events"] == [("status", fetched["status"])]  # a finished job's stream ends at once
    assert job_id in [job["id"] for job in fetched["list"]["jobs"]]
    assert stale["status"]["state"] == "failed" and stale["status"]["error"]["code"] == "interrupted"
    assert json.loads((output / stale_id / "job.json").read_text())["state"] == "failed"
    assert broken == 404


async def _stop_while_busy(backend: BackendProcess) -> Dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        api = Api(session, backend.url)
        # 200 steps: far longer than the few requests below take, however loaded the machine.
        running = await api.submit(generate_body(seed=41, steps=200))
        queued = await api.submit(generate_body(seed=42, steps=2))
        listener = Listener(api, queued)
        await listener.started()  # connected, and the queued job's first status is in
        await api.wait_state(running, "running")
        # SIGTERM while a job runs and a client listens to a job that will not run now.
        code = await asyncio.get_running_loop().run_in_executor(None, backend.stop)
        events = await listener.finished()
        return {"running": running, "queued": queued, "code": code, "events": events}


def test_stop_while_busy_is_clean_and_recorded(tmp_path: Path) -> None:
    output = tmp_path / "out"
    first = BackendProcess(output_dir=output).start()
    try:
        result = asyncio.run(_stop_while_busy(first))
    finally:
        first.stop()
    assert result["code"] == 0, first.log_tail()  # a clean exit, not the SIGKILL fallback
    assert result["events"] and result["events"][0][0] == "status"  # the stream ended, no hang
    with BackendProcess(output_dir=output) as second:
        statuses = asyncio.run(_fetch(second, result["running"], {}))["list"]["jobs"]
    by_id = {job["id"]: job for job in statuses}
    for job_id in (result["running"], result["queued"]):
        assert by_id[job_id]["state"] == "failed" and by_id[job_id]["error"]["code"] == "interrupted"
