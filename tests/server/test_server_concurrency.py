"""Five clients with ten jobs each, all at once: every job finishes with its own, correct result."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any, Dict, List

import aiohttp

from tests.support.api import Api, generate_body
from tests.support.backend_process import BackendProcess

CLIENTS = 5
JOBS_PER_CLIENT = 10


async def _client(backend: BackendProcess, client: int) -> List[Dict[str, Any]]:
    # Each client has its own connection pool, as separate artists' plugins would.
    async with aiohttp.ClientSession() as session:
        api = Api(session, backend.url, backend.token)
        seeds = [1000 + client * JOBS_PER_CLIENT + n for n in range(JOBS_PER_CLIENT)]
        ids = [await api.submit(generate_body(seed=seed, size=64, steps=2, blend="alpha")) for seed in seeds]
        finals = await asyncio.gather(*(api.wait_final(job_id) for job_id in ids))
        out = []
        for seed, job_id, final in zip(seeds, ids, finals):
            blend = await api.image_bytes(final["images"]["blend"]) if final["state"] == "done" else b""
            out.append(
                {"seed": seed, "id": job_id, "final": final, "blend_sha": hashlib.sha256(blend).hexdigest()}
            )
        return out


async def _all(backend: BackendProcess) -> List[Dict[str, Any]]:
    results = await asyncio.gather(*(_client(backend, c) for c in range(CLIENTS)))
    return [job for client in results for job in client]


def test_five_clients_ten_jobs_each(live_backend: BackendProcess) -> None:
    jobs = asyncio.run(_all(live_backend))
    assert len(jobs) == CLIENTS * JOBS_PER_CLIENT
    assert len({job["id"] for job in jobs}) == len(jobs)
    for job in jobs:
        assert job["final"]["state"] == "done", job["final"]
        assert job["final"]["id"] == job["id"]
        assert job["final"]["params"]["seed"] == job["seed"]  # each client got its own job back
    assert len({job["blend_sha"] for job in jobs}) == len(jobs), "two different seeds gave the same blend"
