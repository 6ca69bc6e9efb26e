"""LoRAs through the real HTTP server: listed with their base, chosen per job, bad ones refused with a
4xx that names them, and the model stays loaded for the next job."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Dict

import torch

from backend.models.options import LoadOptions
from backend.models.tiny import build_components
from backend.models.tiny_loras import write_lora
from backend.models.weight_files import load_tensors, save_tensors
from tests.server.inprocess import app_client
from tests.support.api import final_status, generate_body

JSON = {"Content-Type": "application/json"}


def _folders(root: Path) -> LoadOptions:
    """A ComfyUI-style models folder with two SDXL-family (tiny) LoRAs, one SD1.5 LoRA and one misfit."""
    loras = root / "models" / "loras"
    parts = build_components(seed=4)
    write_lora(loras / "ink.safetensors", "kohya", parts)
    write_lora(loras / "chars" / "hero.safetensors", "peft", parts, seed=1)
    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    save_tensors({f"{key}.lora_down.weight": torch.zeros(4, 768), f"{key}.lora_up.weight": torch.zeros(320, 4)},
                 loras / "sd15_style.safetensors")
    misfit = load_tensors(loras / "ink.safetensors")
    misfit["lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight"] = torch.zeros(4, 48)
    save_tensors(misfit, loras / "misfit.safetensors")
    return LoadOptions(model="tiny", device="cpu", models_dir=str(root / "models"))




async def _scenario(root: Path) -> Dict[str, Any]:
    seen: Dict[str, Any] = {}
    async with app_client(root / "out", loading=_folders(root)) as client:
        seen["models"] = await (await client.get("/v1/models")).json()

        async def post(**extra: Any) -> Any:
            return await client.post("/v1/jobs", data=json.dumps(generate_body(**extra)), headers=JSON)

        for label, loras in (("missing", [{"name": "nope"}]), ("sd15", [{"name": "sd15_style.safetensors"}]),
                             ("strength", [{"name": "ink.safetensors", "strength": 4.5}]),
                             ("twice", [{"name": "ink.safetensors"}, {"name": "ink.safetensors"}])):
            response = await post(loras=loras)
            seen[label] = (response.status, await response.json())
        response = await post(loras=[{"name": "misfit.safetensors"}])
        seen["misfit"] = await final_status(client, (await response.json())["id"])
        good = [{"name": "ink.safetensors", "strength": 0.7}, {"name": "chars/hero", "strength": 1.2}]
        response = await post(loras=good, seed=5)
        seen["good"] = await final_status(client, (await response.json())["id"])
        seen["after"] = await final_status(client, (await (await post(seed=5)).json())["id"])
    return seen


def test_loras_over_http(tmp_path: Path) -> None:
    seen = asyncio.run(_scenario(tmp_path))
    listed = {info["name"]: info for info in seen["models"]["loras"]}
    assert set(listed) == {"ink.safetensors", "chars/hero.safetensors", "sd15_style.safetensors", "misfit.safetensors"}
    assert listed["ink.safetensors"]["format"] == "kohya" and listed["ink.safetensors"]["usable"]
    assert listed["chars/hero.safetensors"]["format"] == "peft"
    assert listed["sd15_style.safetensors"]["base"] == "sd1" and not listed["sd15_style.safetensors"]["usable"]
    assert "SD 1.5" in listed["sd15_style.safetensors"]["reason"]
    assert [info["usable"] for info in seen["models"]["loras"]][-1] is False  # usable ones first

    for label, field, words in (("missing", "loras[0].name", "no LoRA named 'nope'"),
                                ("sd15", "loras[0].name", "'sd15_style.safetensors' was trained for SD 1.5"),
                                ("strength", "loras[0].strength", "at most 4.0"),
                                ("twice", "loras[1].name", "listed twice")):
        status, body = seen[label]
        assert 400 <= status < 500, (label, status)
        assert body["error"]["field"] == field and words in body["error"]["message"], (label, body)
        assert "Traceback" not in json.dumps(body)

    misfit = seen["misfit"]
    assert misfit["state"] == "failed" and misfit["error"]["code"] == "invalid_lora"
    assert "'misfit.safetensors' does not fit this model" in misfit["error"]["message"]
    assert seen["good"]["state"] == "done", seen["good"]
    assert seen["good"]["params"]["loras"] == [{"name": "ink.safetensors", "strength": 0.7},
                                               {"name": "chars/hero", "strength": 1.2}]
    assert seen["after"]["state"] == "done" and seen["after"]["params"]["loras"] == []
