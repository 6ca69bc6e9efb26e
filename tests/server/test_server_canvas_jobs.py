"""Jobs on the artist's own layers through the real HTTP server: each kind runs and returns its layers,
the uploads are kept as they came, and bad layers get a 4xx naming the field, before any GPU work."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from pathlib import Path
from typing import Any, Dict

import numpy as np
from PIL import Image

from shared.protocol import LIGHT_NAMES
from tests.server.inprocess import app_client
from tests.support.api import final_status

JSON = {"Content-Type": "application/json"}


def _png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _canvas() -> Image.Image:
    return Image.fromarray((np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8), "RGB")


def _layer(x: int, y: int, side: int = 24) -> Image.Image:
    layer = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    layer.paste(Image.new("RGBA", (side, side), (200, 60, 40, 255)), (x, y))
    return layer


BODIES: Dict[str, Dict[str, Any]] = {
    "add_foreground": {"kind": "add_foreground", "background_png": _png(_canvas()), "foreground_prompt": "a cat",
                       "target": {"x": 16, "y": 16, "width": 40, "height": 40}, "blend_layers": True},
    "add_background": {"kind": "add_background", "foreground_png": _png(_layer(20, 20)),
                       "background_prompt": "a meadow"},
    "harmonize": {"kind": "harmonize", "background_png": _png(_canvas()),
                  "foregrounds": [{"png": _png(_layer(4, 4)), "prompt": "a box"}, {"png": _png(_layer(30, 30))}]},
}
BAD = {
    "empty layer": ({**BODIES["harmonize"], "foregrounds": [{"png": _png(Image.new("RGBA", (64, 64)))}]},
                    "foregrounds[0].png", "no visible pixel"),
    "sizes differ": ({**BODIES["harmonize"], "foregrounds": [{"png": _png(_layer(0, 0).resize((64, 72)))}]}, "foregrounds[0].png", "same size"),
    "target outside": ({**BODIES["add_foreground"], "target": {"x": 40, "y": 0, "width": 40, "height": 40}},
                       "target", "outside"),
    "target too small": ({**BODIES["add_foreground"], "target": {"x": 0, "y": 0, "width": 16, "height": 40}},
                         "target", "too small"),
    "RGB layer": ({**BODIES["add_background"], "foreground_png": _png(_canvas())}, "foreground_png", "RGBA"),
}




async def _scenario(root: Path) -> Dict[str, Any]:
    seen: Dict[str, Any] = {}
    async with app_client(root / "out") as client:
        for label, (body, _, _) in BAD.items():
            response = await client.post("/v1/jobs", data=json.dumps(body), headers=JSON)
            seen[label] = (response.status, await response.json())
        for kind, body in BODIES.items():
            response = await client.post("/v1/jobs", data=json.dumps({**body, "steps": 2, "seed": 4}), headers=JSON)
            assert response.status == 202, await response.text()
            status = await final_status(client, (await response.json())["id"])
            images = {}
            for name, path in (status.get("images") or {}).items():
                images[name] = Image.open(io.BytesIO(await (await client.get(path)).read()))
            seen[kind] = (status, images)
    return seen


def test_canvas_jobs_over_http(tmp_path: Path) -> None:
    seen = asyncio.run(_scenario(tmp_path))
    for label, (_, field, words) in BAD.items():
        status, body = seen[label]
        assert status == 422, (label, status, body)
        assert body["error"]["field"] == field and words in body["error"]["message"], (label, body)

    status, images = seen["add_foreground"]
    assert status["state"] == "done", status
    assert {"foreground", "blend", *LIGHT_NAMES} <= set(images) and "background" not in images
    alpha = np.asarray(images["foreground"])[..., 3].astype(float)
    assert alpha[16:56, 16:56].sum() >= 0.9 * alpha.sum()
    assert status["params"]["target"] == {"x": 16, "y": 16, "width": 40, "height": 40}
    assert "background_png" not in json.dumps(status["params"])

    status, images = seen["add_background"]
    assert status["state"] == "done" and set(images) == {"background", "blend"}, status

    status, images = seen["harmonize"]
    assert status["state"] == "done" and set(images) == {"blend"}, status
    assert status["params"]["foregrounds"] == [{"prompt": "a box"}, {"prompt": ""}]
    # The uploads are kept bit for bit beside the result, so the job can be reproduced from its folder.
    folder = tmp_path / "out" / status["id"]
    kept = folder / "input-foreground1.png"
    assert base64.b64encode(kept.read_bytes()).decode("ascii") == BODIES["harmonize"]["foregrounds"][1]["png"]
