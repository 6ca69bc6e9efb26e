"""Generate and re-blend through HTTP against the real backend with the tiny model."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from pathlib import Path
from typing import Any, Dict

import aiohttp
from PIL import Image

from shared.protocol import LAYER_NAMES, MAP_NAMES
from tests.support.api import Api, generate_body, png_base64
from tests.support.backend_process import BackendProcess


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _generate(backend: BackendProcess) -> Dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        api = Api(session, backend.url, backend.token)
        job_id = await api.submit(generate_body(seed=1234, size=64, steps=3, blend="generative"))
        events = await api.all_events(job_id)
        status = await api.status(job_id)
        images = await api.images(status)
        return {"id": job_id, "events": events, "status": status, "images": images}


def test_generate_end_to_end(live_backend: BackendProcess) -> None:
    result = run(_generate(live_backend))
    events, status, images = result["events"], result["status"], result["images"]

    # The stream opens with a status, reports steps in order, and ends with the final status.
    assert events[0][0] == "status"
    assert events[-1][0] == "status" and events[-1][1]["state"] == "done"
    steps = [data["step"] for name, data in events if name == "progress"]
    assert steps, "no progress events"
    assert steps == sorted(steps) and steps[-1] == events[-1][1]["progress"]["total"]
    states = [data["state"] for name, data in events if name == "status"]
    assert states[-1] == "done" and "failed" not in states

    assert status["state"] == "done" and status["kind"] == "generate"
    assert status["params"]["seed"] == 1234
    assert set(images) == set(LAYER_NAMES + MAP_NAMES)  # the layers and the method's maps
    assert {images[name].mode for name in MAP_NAMES} == {"L"}
    assert images["foreground"].mode == "RGBA"
    assert images["background"].mode == "RGB" and images["blend"].mode == "RGB"
    assert all(image.size == (64, 64) for image in images.values())

    # Everything is on disk, with the parameters, under the job's folder.
    folder = Path(live_backend.output_dir) / result["id"]
    record = json.loads((folder / "job.json").read_text())
    assert record["state"] == "done" and record["params"]["seed"] == 1234
    assert record["params"]["foreground_prompt"] == "a wine glass"
    assert sorted(p.name for p in folder.glob("*.png")) == sorted(name + ".png" for name in LAYER_NAMES + MAP_NAMES)


def test_progress_previews_are_small_pngs(live_backend: BackendProcess) -> None:
    result = run(_generate(live_backend))
    previews = [
        data["preview_png"] for name, data in result["events"] if name == "progress" and "preview_png" in data
    ]
    assert previews, "the server asks the engine for previews; none came"
    for preview in previews:
        image = Image.open(io.BytesIO(base64.b64decode(preview)))
        assert max(image.size) <= 256  # PREVIEW_SIDE: small enough for a few kB a step
    phases = [data["phase"] for name, data in result["events"] if name == "progress"]
    assert set(phases) <= {"prior", "denoise"} and phases[-1] == "denoise"
    assert phases == sorted(phases, key=["prior", "denoise"].index)  # the prior pass comes first


async def _reblend(backend: BackendProcess) -> Dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        api = Api(session, backend.url, backend.token)
        first = await api.wait_final(await api.submit(generate_body(seed=7, size=64, steps=2)))
        images = await api.images(first)
        # The artist moved the foreground 8 px to the right.
        moved = Image.new("RGBA", images["foreground"].size, (0, 0, 0, 0))
        moved.paste(images["foreground"], (8, 0))
        body = {
            "kind": "reblend",
            "foreground_png": png_base64(moved),
            "background_png": png_base64(images["background"]),
            "foreground_prompt": "a wine glass",
            "background_prompt": "a wooden table",
            "steps": 4,
            "strength": 0.5,
            "seed": 99,
        }
        job_id = await api.submit(body)
        final = await api.wait_final(job_id)
        return {
            "id": job_id,
            "final": final,
            "images": await api.images(final) if final.get("images") else {},
        }


def test_reblend_end_to_end(live_backend: BackendProcess) -> None:
    result = run(_reblend(live_backend))
    assert result["final"]["state"] == "done", result["final"]
    assert result["final"]["kind"] == "reblend"
    blend = result["images"]["blend"]
    assert blend.mode == "RGB" and blend.size == (64, 64)
    params = result["final"]["params"]
    assert params["seed"] == 99 and params["strength"] == 0.5
    assert "foreground_png" not in params and "background_png" not in params
    folder = Path(live_backend.output_dir) / result["id"]
    assert (folder / "input-foreground.png").is_file() and (folder / "input-background.png").is_file()
    assert json.loads((folder / "job.json").read_text())["state"] == "done"


async def _listing(backend: BackendProcess) -> Dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        api = Api(session, backend.url, backend.token)
        ids = [await api.submit(generate_body(seed=s)) for s in (11, 12)]
        for job_id in ids:
            await api.wait_final(job_id)
        return {
            "ids": ids,
            "list": await api.get_json("/v1/jobs?limit=2"),
            "health": await api.get_json("/v1/health"),
            "models": await api.get_json("/v1/models"),
            "openapi": await api.get_json("/openapi.json"),
        }


def test_health_models_listing_and_openapi(live_backend: BackendProcess) -> None:
    result = run(_listing(live_backend))
    assert [job["id"] for job in result["list"]["jobs"]] == result["ids"][::-1]  # newest first
    health = result["health"]
    assert health["state"] == "ready" and health["model"] == "tiny" and health["auth"] is False
    assert health["device"]
    models = result["models"]
    assert models["loaded"] == "tiny"
    assert any(m["name"] == "tiny" and m["loaded"] for m in models["models"])
    paths = result["openapi"]["paths"]
    for path in (
        "/v1/health",
        "/v1/models",
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/events",
        "/v1/jobs/{id}/images/{name}.png",
    ):
        assert path in paths
    assert "GenerateRequest" in result["openapi"]["components"]["schemas"]
