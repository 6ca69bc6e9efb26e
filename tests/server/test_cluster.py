"""The studio backend on a real Ray cluster started by the test: two CPU workers, one torch thread each.

The API server joins the cluster with ``--ray-address``, exactly as a studio's does; every check goes
through its HTTP API, as the plugin's would. Ray is stopped at the end.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List

import aiohttp
import pytest

from tests.support.api import WAIT_S, Api, generate_body
from tests.support.backend_process import BackendProcess

pytest.importorskip("ray", reason="Ray is not installed (python3 install.py --cluster installs it)")

RAY = str(Path(sys.executable).with_name("ray"))
SEEDS = range(10)
# Long enough to still be running when the test reacts to its first step.
LONG = dict(size=64, steps=200)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    # A short folder: Ray's socket paths inside it must stay under the system's length limit.
    temp = tempfile.mkdtemp(prefix="lfray", dir="/tmp")
    port = _free_port()
    subprocess.run([RAY, "start", "--head", "--port", str(port), "--num-cpus", "2", "--num-gpus", "0",
                    "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", temp],
                   check=True, capture_output=True, timeout=300)
    try:
        yield "127.0.0.1:%d" % port
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=300)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Every server here runs torch on one thread, so the two kinds compute alike."""
    old = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    if old is None:
        del os.environ["OMP_NUM_THREADS"]
    else:
        os.environ["OMP_NUM_THREADS"] = old


@pytest.fixture(scope="module")
def cluster(ray_head: str, one_thread: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendProcess]:
    backend = BackendProcess(
        output_dir=tmp_path_factory.mktemp("cluster-output"),
        extra_args=("--ray-address", ray_head, "--cluster-workers", "2", "--torch-threads", "1",
                    "--max-queue", "64"),
    )
    backend.start()
    try:
        yield backend
    finally:
        assert backend.stop() == 0, backend.log_tail()


@pytest.fixture(scope="module")
def single(one_thread: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendProcess]:
    backend = BackendProcess(output_dir=tmp_path_factory.mktemp("single-output"))
    backend.start()
    try:
        yield backend
    finally:
        backend.stop()


def _run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, WAIT_S * 3))


def _worker_name(status: Dict[str, Any]) -> str:
    return str(status["params"]["worker"]).split(" ")[0]  # "worker-1 (pid 123, cpu (float32))"


def _worker_pid(status: Dict[str, Any]) -> int:
    return int(str(status["params"]["worker"]).split("pid ")[1].split(",")[0])


async def _results(api: Api, status: Dict[str, Any]) -> Dict[str, bytes]:
    return {name: (await api.images(status))[name].tobytes() for name in ("foreground", "background", "blend")}


def test_three_clients_thirty_jobs_use_both_workers_lose_none_and_match_the_single_server(
        cluster: BackendProcess, single: BackendProcess) -> None:
    async def scenario() -> Dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            apis = [Api(session, cluster.url, client="artist-%d" % n) for n in range(3)]
            ids = [(api, seed, await api.submit(generate_body(seed=seed))) for api in apis for seed in SEEDS]
            finals = [(api, seed, await api.wait_final(job)) for api, seed, job in ids]
            reference = Api(session, single.url)
            expected = {}
            for seed in SEEDS:
                expected[seed] = await _results(reference, await reference.wait_final(
                    await reference.submit(generate_body(seed=seed))))
            same = [await _results(api, status) == expected[seed] for api, seed, status in finals]
            return {"states": [s["state"] for _, _, s in finals], "workers": {_worker_name(s) for _, _, s in finals},
                    "same": same, "jobs": len({s["id"] for _, _, s in finals})}

    got = _run(scenario())
    assert got["jobs"] == 30 and got["states"] == ["done"] * 30
    assert got["workers"] == {"worker-0", "worker-1"}
    assert all(got["same"]), "results differing from the single-process server: %s" % got["same"]


def test_one_artists_batch_does_not_hold_back_another_artists_job(cluster: BackendProcess) -> None:
    async def scenario() -> Dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            a, b = Api(session, cluster.url, client="batch"), Api(session, cluster.url, client="single")
            batch = [await a.submit(generate_body(seed=n, steps=6)) for n in range(10)]
            lone = await b.submit(generate_body(seed=99, steps=6))
            position = {"lone": (await b.status(lone))["queue_position"],
                        "tenth": (await a.status(batch[-1]))["queue_position"]}
            health = await a.get_json("/v1/health")
            finals = [await a.wait_final(job) for job in batch]
            return {"position": position, "queue_length": health["queue_length"],
                    "lone": await b.wait_final(lone), "tenth": finals[-1], "states": [s["state"] for s in finals]}

    got = _run(scenario())
    assert got["states"] == ["done"] * 10 and got["lone"]["state"] == "done"
    # Two workers took the first two of the batch; the lone job is next but at most one.
    assert got["position"]["lone"] is not None and got["position"]["lone"] <= 1, got["position"]
    assert got["position"]["tenth"] is not None and got["position"]["tenth"] > got["position"]["lone"]
    assert got["queue_length"] >= 9  # reported while the batch waits: queued and running
    assert got["lone"]["started"] < got["tenth"]["started"]


def test_cancel_reaches_the_worker_running_the_job(cluster: BackendProcess) -> None:
    async def scenario() -> Dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            api = Api(session, cluster.url, client="canceller")
            job = await api.submit(generate_body(seed=3, **LONG))
            steps: List[int] = []
            async for name, data in api.events(job):
                if name == "progress":
                    steps.append(data["step"])
                    if len(steps) == 1:
                        await api.cancel(job)
            final = await api.status(job)
            after = await api.wait_final(await api.submit(generate_body(seed=4)))
            return {"final": final, "steps": steps, "after": after}

    got = _run(scenario())
    assert got["final"]["state"] == "cancelled"
    assert got["final"]["progress"]["step"] < LONG["steps"] // 2  # stopped early, not run to the end
    assert got["after"]["state"] == "done"  # the worker goes on


def test_a_killed_worker_fails_its_job_the_other_goes_on_and_it_serves_again(cluster: BackendProcess) -> None:
    async def scenario() -> Dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            api = Api(session, cluster.url, client="victim")
            doomed = await api.submit(generate_body(seed=5, **LONG))
            running = await api.wait_state(doomed, "running")
            while running["progress"]["step"] < 1:  # denoising has started: it is not retried
                running = await api.status(doomed)
                await asyncio.sleep(0.05)
            killed, pid = _worker_name(running), _worker_pid(running)
            others = [await api.submit(generate_body(seed=n)) for n in (6, 7)]
            os.kill(pid, signal.SIGKILL)
            failed = await api.wait_final(doomed)
            finals = [await api.wait_final(job) for job in others]
            # Ray restarts the killed worker: health counts it again once its model is loaded.
            health = await api.get_json("/v1/health")
            while health["workers"] < 2:
                await asyncio.sleep(0.1)
                health = await api.get_json("/v1/health")
            # One long job holds a worker, so a short one must run on the other: both serve.
            holder = await api.submit(generate_body(seed=20, **LONG))
            held = await api.wait_state(holder, "running")
            short = await api.wait_final(await api.submit(generate_body(seed=21)))
            await api.cancel(holder)
            await api.wait_final(holder)
            again = next((s for s in (held, short) if _worker_name(s) == killed), None)
            assert short["state"] == "done", short
            return {"failed": failed, "finals": finals, "again": again, "killed": killed, "pid": pid,
                    "health": health, "names": {_worker_name(held), _worker_name(short)}}

    got = _run(scenario())
    assert got["failed"]["state"] == "failed"
    assert got["failed"]["error"]["code"] == "worker_lost"
    assert got["killed"] in got["failed"]["error"]["message"]
    assert [s["state"] for s in got["finals"]] == ["done", "done"]
    assert got["names"] == {"worker-0", "worker-1"}
    assert got["again"] is not None, "the killed worker never ran a job again"
    assert _worker_pid(got["again"]) != got["pid"]
    assert got["health"]["workers"] == 2 and got["health"]["state"] == "ready"


def test_a_job_whose_worker_dies_before_its_first_step_is_run_again(cluster: BackendProcess) -> None:
    async def scenario() -> Dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            api = Api(session, cluster.url, client="retried")
            # The tiny model's largest size: its first step takes far longer than the test needs to react.
            job = await api.submit(generate_body(seed=8, size=1024, steps=2))
            running = await api.wait_state(job, "running")
            os.kill(_worker_pid(running), signal.SIGKILL)
            return {"running": running, "final": await api.wait_final(job)}

    got = _run(scenario())
    assert got["running"]["progress"]["step"] == 0
    assert got["final"]["state"] == "done", got["final"].get("error")
    assert _worker_pid(got["final"]) != _worker_pid(got["running"])  # run again, by a live worker


def test_workers_whose_model_cannot_load_make_health_say_why(tmp_path: Path) -> None:
    # Its own local Ray (--cluster without an address), next to the head the other tests use.
    missing = tmp_path / "no-such-checkpoint.safetensors"
    backend = BackendProcess(output_dir=tmp_path / "out", model=str(missing),
                             extra_args=("--cluster", "--cluster-workers", "2", "--torch-threads", "1"))
    backend.start(allow_error=True)
    try:
        health = backend.health()
        assert health["state"] == "error" and health["workers"] == 0
        assert "could not be loaded" in health["error"] and "no-such-checkpoint" in health["error"]
    finally:
        assert backend.stop() == 0, backend.log_tail()


def test_the_single_process_server_imports_no_ray() -> None:
    code = ("import sys, backend.server.app, backend.cli.serve; "
            "sys.exit(1 if any(m == 'ray' or m.startswith('ray.') for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code], timeout=600).returncode == 0
