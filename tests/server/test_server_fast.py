"""Speed 'fast' through the real HTTP server: the health names the preset, a fast job runs it, and a
request it cannot run is a 4xx naming the field."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Dict

from backend.models.options import LoadOptions
from backend.models.tiny import build_components
from backend.models.tiny_loras import write_lora
from tests.server.inprocess import app_client
from tests.support.api import final_status, generate_body

JSON = {"Content-Type": "application/json"}
LIGHTNING = "sdxl_lightning_4step_lora.safetensors"


async def _scenario(root: Path, fast_lora: str) -> Dict[str, Any]:
    write_lora(root / "loras" / LIGHTNING, "kohya", build_components(seed=4), text_encoders=False)
    loading = LoadOptions(model="tiny", device="cpu", lora_dirs=[str(root / "loras")], fast_lora=fast_lora)
    seen: Dict[str, Any] = {}
    async with app_client(root / "out", loading=loading) as client:
        seen["health"] = await (await client.get("/v1/health")).json()

        async def post(**extra: Any) -> Any:
            return await client.post("/v1/jobs", data=json.dumps(generate_body(**extra)), headers=JSON)

        for label, extra in (("steps", {"speed": "fast", "steps": 25}),
                             ("unknown", {"speed": "fast", "steps": 4, "fast_lora": "my_style.safetensors"}),
                             ("quality_lora", {"fast_lora": LIGHTNING}),
                             ("speed", {"speed": "quick"})):
            response = await post(**extra)
            seen[label] = (response.status, await response.json())
        response = await post(speed="fast", steps=4)
        seen["fast"] = (response.status, await response.json())
        if response.status == 202:
            seen["done"] = await final_status(client, seen["fast"][1]["id"])
    return seen


def _refused(seen: Dict[str, Any], label: str, field: str, words: str) -> None:
    status, body = seen[label]
    assert 400 <= status < 500, (label, status, body)
    assert body["error"]["field"] == field and words in body["error"]["message"], (label, body)
    assert "Traceback" not in json.dumps(body)


def test_fast_over_http(tmp_path: Path) -> None:
    seen = asyncio.run(_scenario(tmp_path, LIGHTNING))
    fast = seen["health"]["fast"]
    assert fast["family"] == "lightning" and fast["sampler"] == "euler_trailing" and fast["default_steps"] == 4
    _refused(seen, "steps", "steps", "runs 1 to 8 steps")
    _refused(seen, "unknown", "fast_lora", "cannot tell which distillation")
    _refused(seen, "quality_lora", "fast_lora", "only with speed 'fast'")
    _refused(seen, "speed", "speed", "quick")
    assert seen["fast"][0] == 202, seen["fast"]
    done = seen["done"]
    assert done["state"] == "done", done
    assert done["params"]["fast_preset"]["source"] == LIGHTNING and done["params"]["guidance"] == 1.0


def test_a_configured_fast_lora_that_is_missing_is_named_at_submit(tmp_path: Path) -> None:
    seen = asyncio.run(_scenario(tmp_path, "sdxl_lightning_8step_lora.safetensors"))
    assert seen["health"]["fast"]["default_steps"] == 8
    _refused(seen, "fast", "speed", "sdxl_lightning_8step_lora")
