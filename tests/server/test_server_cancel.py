"""Cancelling running and queued jobs, and clients that leave the event stream early."""

from __future__ import annotations

import asyncio
from typing import Any, Dict

import aiohttp

from shared.protocol import LAYER_NAMES, MAP_NAMES
from tests.support.api import Api, generate_body
from tests.support.backend_process import BackendProcess

# Long enough that it is still running when the test reacts to its first step.
LONG = dict(size=64, steps=200)


async def _cancel_running(backend: BackendProcess) -> Dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        api = Api(session, backend.url, backend.token)
        long_id = await api.submit(generate_body(seed=1, **LONG))
        second_id = None
        events = []
        async for name, data in api.events(long_id):
            events.append((name, data))
            if name == "progress" and second_id is None:
                # Queue the next job first, so the worker has something to go on with.
                second_id = await api.submit(generate_body(seed=2))
                cancelled = await api.cancel(long_id)
        assert second_id is not None
        second = await api.wait_final(second_id)
        return {
            "events": events,
            "cancel_answer": cancelled,
            "status": await api.status(long_id),
            "second": second,
        }


def test_cancel_running_job_then_next_job_completes(live_backend: BackendProcess) -> None:
    result = asyncio.run(_cancel_running(live_backend))
    final = result["events"][-1]
    assert final[0] == "status" and final[1]["state"] == "cancelled"
    assert result["cancel_answer"]["state"] in ("running", "cancelled")
    status = result["status"]
    assert status["state"] == "cancelled" and "images" not in status
    assert status["progress"]["step"] < status["progress"]["total"]
    assert result["second"]["state"] == "done"


async def _cancel_queued(backend: BackendProcess) -> Dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        api = Api(session, backend.url, backend.token)
        running_id = await api.submit(generate_body(seed=3, **LONG))
        queued_id = await api.submit(generate_body(seed=4))
        waiting = await api.status(queued_id)
        answer = await api.cancel(queued_id)
        queued_events = await api.all_events(queued_id)
        await api.cancel(running_id)
        running_final = await api.wait_final(running_id)
        return {
            "waiting": waiting,
            "answer": answer,
            "queued_events": queued_events,
            "running_final": running_final,
            "again": await api.cancel(queued_id),
        }


def test_cancel_queued_job_removes_it(live_backend: BackendProcess) -> None:
    result = asyncio.run(_cancel_queued(live_backend))
    assert result["waiting"]["state"] == "queued" and result["waiting"]["queue_position"] in (0, 1)
    # A queued job is taken out at once: the answer already says cancelled, and it never ran.
    assert result["answer"]["state"] == "cancelled"
    assert result["queued_events"] == [("status", result["queued_events"][0][1])]
    assert result["queued_events"][0][1]["state"] == "cancelled"
    assert result["queued_events"][0][1]["progress"]["step"] == 0
    assert result["running_final"]["state"] == "cancelled"
    assert result["again"]["state"] == "cancelled"  # cancelling twice is harmless


async def _disconnect(backend: BackendProcess) -> Dict[str, Any]:
    job_id = None
    # The first client opens the stream, reads one step, and goes away without a word.
    async with aiohttp.ClientSession() as session:
        api = Api(session, backend.url, backend.token)
        job_id = await api.submit(generate_body(seed=5, size=64, steps=8))
        async for name, _ in api.events(job_id):
            if name == "progress":
                break
    async with aiohttp.ClientSession() as session:
        api = Api(session, backend.url, backend.token)
        final = await api.wait_final(job_id)
        return {"final": final, "images": await api.images(final)}


def test_disconnecting_event_client_does_not_stop_the_job(live_backend: BackendProcess) -> None:
    result = asyncio.run(_disconnect(live_backend))
    assert result["final"]["state"] == "done"
    assert set(result["images"]) == set(LAYER_NAMES + MAP_NAMES)
