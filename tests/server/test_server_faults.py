"""Faults injected into a real server (in-process app, real engine, real sockets, real file systems).

Each fault: the job ends ``failed`` with a plain reason, nothing half-written is left in the results
folder, and the server runs the next job. The folder faults are real: the results folder is a small
tmpfs that is filled up or remounted read-only (root only, as in CI).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest
import torch
from aiohttp.test_utils import TestClient

from backend.server.routes import SERVICE
from shared.protocol import LAYER_NAMES, MAP_NAMES
from tests.server.inprocess import app_client
from tests.support.api import final_status, generate_body

JSON = {"Content-Type": "application/json"}
# Bounds for waiting on states, not durations: generous for a loaded two-core machine.
STATE_TIMEOUT_S = 300


class UnetFault:
    """Replaces the served UNet's forward: ``action`` runs on its first call (raise, or wait for the
    test to set up a fault), then the real forward takes over again."""

    def __init__(self, client: TestClient, action: Callable[[], None]) -> None:
        self.unet = client.app[SERVICE].engine.pipe.unet
        self.action = action
        self.entered = threading.Event()
        self._real = self.unet.forward

    def __enter__(self) -> "UnetFault":
        def forward(*args: Any, **kwargs: Any) -> Any:
            if not self.entered.is_set():
                self.entered.set()
                self.action()
            return self._real(*args, **kwargs)

        self.unet.forward = forward
        return self

    def __exit__(self, *exc: Any) -> None:
        del self.unet.forward  # the class's forward again


class Gate:
    """Holds the worker inside its first UNet call until the test has set up its fault."""

    def __init__(self) -> None:
        self.open = threading.Event()

    def __call__(self) -> None:
        assert self.open.wait(STATE_TIMEOUT_S), "the test never opened the gate"


async def _wait(event: threading.Event) -> None:
    ok = await asyncio.get_running_loop().run_in_executor(None, event.wait, STATE_TIMEOUT_S)
    assert ok, "the worker never reached the UNet"


async def _submit(client: TestClient, **body: Any) -> str:
    response = await client.post("/v1/jobs", data=json.dumps(generate_body(**body)), headers=JSON)
    assert response.status == 202, await response.text()
    return str((await response.json())["id"])




def _leftovers(job_dir: Path) -> List[str]:
    """What a failed job must not leave: result PNGs or temporary files."""
    if not job_dir.exists():
        return []
    return sorted(p.name for p in job_dir.iterdir() if p.suffix in (".png", ".tmp") or p.name.startswith("."))


async def _next_job_is_done(client: TestClient) -> None:
    status = await final_status(client, await _submit(client, seed=99))
    assert status["state"] == "done", status
    assert set(status["images"]) == set(LAYER_NAMES + MAP_NAMES)  # the layers and the method's maps


# -- faults in the pipeline ---------------------------------------------------------------------


def _raise(err: BaseException) -> Callable[[], None]:
    def action() -> None:
        raise err

    return action


async def _pipeline_fault(output: Path, err: BaseException) -> Dict[str, Any]:
    async with app_client(output) as client:
        with UnetFault(client, _raise(err)):
            job_id = await _submit(client, seed=5, size=96)
            status = await final_status(client, job_id)
        record = json.loads((output / job_id / "job.json").read_text())
        await _next_job_is_done(client)
        return {"status": status, "record": record, "left": _leftovers(output / job_id)}


def test_out_of_memory_says_what_to_try(tmp_path: Path) -> None:
    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    result = asyncio.run(_pipeline_fault(tmp_path, oom))
    error = result["status"]["error"]
    assert result["status"]["state"] == "failed" and error["code"] == "out_of_memory", error
    for advice in ("96x96", "smaller size", "--cpu-offload", "--vae-tiling", "--attention-slicing"):
        assert advice in error["message"], error["message"]
    assert "Traceback" not in error["message"]
    assert result["record"]["state"] == "failed" and result["record"]["error"] == error
    assert result["left"] == []


def test_a_pipeline_that_raises_fails_the_job_with_an_id_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="backend.server.worker")
    result = asyncio.run(_pipeline_fault(tmp_path, RuntimeError("a tensor went wrong")))
    error = result["status"]["error"]
    assert result["status"]["state"] == "failed" and error["code"] == "job_failed", error
    error_id = re.search(r"error id ([0-9a-f]{12})", error["message"]).group(1)  # type: ignore[union-attr]
    logged = [r for r in caplog.records if error_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the log has the traceback under that id
    assert result["left"] == []


async def _handler_fault(output: Path, monkeypatch: pytest.MonkeyPatch) -> Dict[str, Any]:
    def broken(*args: Any) -> Any:
        raise RuntimeError("secret detail /home/artist/private")

    async with app_client(output) as client:
        monkeypatch.setattr("backend.server.routes.model_list", broken)
        response = await client.get("/v1/models")
        out = {"status": response.status, "type": response.content_type, "body": await response.text()}
        out["health"] = (await client.get("/v1/health")).status
        return out


def test_an_unexpected_error_is_a_500_with_only_the_logged_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="backend.server.errors")
    result = asyncio.run(_handler_fault(tmp_path, monkeypatch))
    assert result["status"] == 500 and result["type"] == "application/json"
    body = json.loads(result["body"])
    error_id = re.fullmatch(r"internal server error; the server log has id ([0-9a-f]{12})", body["error"]["message"])
    assert error_id is not None and body == {"error": {"code": "internal", "message": body["error"]["message"]}}
    assert "secret" not in result["body"] and "Traceback" not in result["body"]
    logged = [r for r in caplog.records if error_id.group(1) in r.getMessage()]
    assert logged and logged[0].exc_info is not None and "secret detail" in str(logged[0].exc_info[1])
    assert result["health"] == 200  # and the server goes on


# -- faults in the results folder ---------------------------------------------------------------


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs results folder needs root")
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % mounted.stderr.decode().strip())
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _remount(path: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", "remount," + mode, str(path)], check=True, capture_output=True)


# Room left on the full disk: a 64x64 foreground PNG of noise (~17 kB) fits, the background after it
# does not, so the job fails halfway through saving its results.
ROOM_FOR_ONE_PNG = 24 * 1024


def _fill(path: Path, room: int = ROOM_FOR_ONE_PNG, name: str = "filler.bin") -> None:
    """Fills the file system up to ``room`` bytes with ``name`` (delete it to free the space)."""
    filler = path / name
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 65536)
        except OSError:
            pass
        try:
            while True:
                out.write(b"\0" * 512)
        except OSError:
            pass
    os.truncate(filler, max(0, filler.stat().st_size - room))


async def _folder_fault(
    output: Path, break_it: Callable[[], None], refuse: Callable[[], None], mend: Callable[[], None]
) -> Dict[str, Any]:
    """``break_it`` while a job runs; ``refuse`` makes sure a new submission cannot be written;
    ``mend`` repairs the folder for the next job."""
    async with app_client(output) as client:
        gate = Gate()
        with UnetFault(client, gate) as fault:
            job_id = await _submit(client, seed=6)
            await _wait(fault.entered)  # the job is running, its submission record on disk
            break_it()
            gate.open.set()
            status = await final_status(client, job_id)
        out: Dict[str, Any] = {"status": status, "left": _leftovers(output / job_id)}
        # While the folder is broken a new job is refused with the reason, and leaves no folder.
        refuse()
        before = set(p.name for p in output.iterdir())
        response = await client.post("/v1/jobs", data=json.dumps(generate_body(seed=7)), headers=JSON)
        out["submit"] = (response.status, await response.json())
        out["new folders"] = sorted(set(p.name for p in output.iterdir()) - before)
        out["health"] = (await client.get("/v1/health")).status
        mend()
        await _next_job_is_done(client)
        return out


def test_a_full_results_folder_fails_the_job_and_leaves_nothing(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "out", "4m") as output:

        def mend() -> None:
            for filler in output.glob("filler*.bin"):
                filler.unlink()

        result = asyncio.run(
            _folder_fault(
                output,
                lambda: _fill(output),
                lambda: _fill(output, room=0, name="filler-2.bin"),
                mend,
            )
        )
    error = result["status"]["error"]
    assert result["status"]["state"] == "failed" and error["code"] == "disk_full", error
    assert str(output) in error["message"] and "--output-dir" in error["message"]
    assert result["left"] == []
    status, body = result["submit"]
    assert status == 507 and body["error"]["code"] == "disk_full", body
    assert result["new folders"] == [] and result["health"] == 200


def test_a_read_only_results_folder_fails_the_job_and_leaves_nothing(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "out", "16m") as output:
        result = asyncio.run(
            _folder_fault(output, lambda: _remount(output, "ro"), lambda: None, lambda: _remount(output, "rw"))
        )
    error = result["status"]["error"]
    assert result["status"]["state"] == "failed" and error["code"] == "output_not_writable", error
    assert str(output) in error["message"]
    assert result["left"] == []
    status, body = result["submit"]
    assert status == 503 and body["error"]["code"] == "output_not_writable", body
    assert result["new folders"] == [] and result["health"] == 200
