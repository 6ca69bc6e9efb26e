"""Every malformed request gets a 4xx JSON error naming what is wrong (in-process server)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import struct
import time
import zlib
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from PIL import Image

from shared.protocol import MAX_UPLOAD_BYTES
from tests.server.inprocess import app_client
from tests.support.api import WAIT_S, generate_body, png_base64

JSON = {"Content-Type": "application/json"}


def _png(mode: str, size: Tuple[int, int] = (64, 64)) -> str:
    return png_base64(Image.new(mode, size))


def _header_only_png(width: int, height: int) -> str:
    """A PNG whose header claims a size, with no pixel data behind it."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    chunk = (
        struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    )
    return base64.b64encode(b"\x89PNG\r\n\x1a\n" + chunk).decode()


def _truncated_png() -> str:
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGBA").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()[: len(buffer.getvalue()) // 2]).decode()


def _layer() -> str:
    """An RGBA layer with something to place and transparency around it."""
    image = Image.new("RGBA", (64, 64))
    image.paste(Image.new("RGBA", (16, 16), (200, 50, 40, 255)), (24, 24))
    return png_base64(image)


def _reblend(**overrides: Any) -> Dict[str, Any]:
    body = {
        "kind": "reblend",
        "foreground_png": _layer(),
        "background_png": _png("RGB"),
        "foreground_prompt": "a glass",
        "background_prompt": "a table",
        "steps": 2,
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


# (label, raw body or JSON object, expected status, expected error field or None): 400 where the body
# breaks the schema, 422 where it fits the schema but cannot be used.
CASES: List[Tuple[str, Any, int, Optional[str]]] = [
    ("bad json", b'{"kind": ', 400, None),
    ("not utf-8", b"\xff\xfe{}", 400, None),
    ("array body", b"[1, 2]", 400, None),
    ("no kind", {"width": 64}, 400, "kind"),
    ("no kind, reblend fields", {k: v for k, v in _reblend().items() if k != "kind"}, 400, "kind"),
    ("unknown kind", {"kind": "paint"}, 400, "kind"),
    (
        "missing prompt",
        {k: v for k, v in generate_body().items() if k != "foreground_prompt"},
        400,
        "foreground_prompt",
    ),
    ("blank prompt", generate_body(foreground_prompt="   "), 400, "foreground_prompt"),
    ("prompt too long", generate_body(background_prompt="x" * 5000), 400, "background_prompt"),
    ("width a string", generate_body(width="64"), 400, "width"),
    ("width a float", generate_body(width=64.5), 400, "width"),
    ("steps a bool", generate_body(steps=True), 400, "steps"),
    ("steps zero", generate_body(steps=0), 400, "steps"),
    ("seed negative", generate_body(seed=-1), 400, "seed"),
    (
        "guidance nan",
        b'{"kind":"generate","foreground_prompt":"a","background_prompt":"b","width":64,'
        b'"height":64,"guidance":NaN}',
        400,
        "guidance",
    ),
    ("unknown field", generate_body(colour="red"), 400, "colour"),
    ("bad blend", generate_body(blend="mix"), 400, "blend"),
    ("bad option", generate_body(options={"threshold": 2}), 400, "options.threshold"),
    ("old option", generate_body(options={"softness": 0.5}), 400, "options.softness"),
    ("huge width", generate_body(width=100000, height=64), 400, "width"),
    ("too many pixels", generate_body(width=4096, height=4096), 422, "width"),
    ("not multiple of 8", generate_body(width=68), 400, "width"),
    ("missing png", _reblend(foreground_png=None), 400, "foreground_png"),
    ("png not base64", _reblend(foreground_png="not base64!!"), 422, "foreground_png"),
    (
        "png not a png",
        _reblend(background_png=base64.b64encode(b"GIF89a" + b"\0" * 40).decode()),
        422,
        "background_png",
    ),
    ("corrupt png", _reblend(foreground_png=_truncated_png()), 422, "foreground_png"),
    ("foreground rgb", _reblend(foreground_png=_png("RGB")), 422, "foreground_png"),
    ("foreground empty", _reblend(foreground_png=_png("RGBA")), 422, "foreground_png"),
    ("background grey", _reblend(background_png=_png("L")), 422, "background_png"),
    ("size mismatch", _reblend(background_png=_png("RGB", (64, 128))), 422, "foreground_png"),
    (
        "huge png header",
        _reblend(foreground_png=_header_only_png(100000, 64), background_png=_header_only_png(100000, 64)),
        422,
        "foreground_png",
    ),
    ("strength zero", _reblend(strength=0), 400, "strength"),
]


async def _post_all(output: Path) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    async with app_client(output, wait_ready=False) as client:
        for label, body, _, _ in CASES:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            response = await client.post("/v1/jobs", data=data, headers=JSON)
            out[label] = (response.status, response.content_type, await response.text())
        response = await client.post("/v1/jobs", data=b"x" * (MAX_UPLOAD_BYTES + 1), headers=JSON)
        out["oversize upload"] = (response.status, response.content_type, await response.text())
        response = await client.post(
            "/v1/jobs", data=json.dumps(generate_body()).encode(), headers={"Content-Type": "text/plain"}
        )
        out["not json content type"] = (response.status, response.content_type, await response.text())
        for label, method, path in (
            ("unknown path", "GET", "/v2/nothing"),
            ("no such job", "GET", "/v1/jobs/x"),
            ("wrong method", "PUT", "/v1/jobs"),
            ("no such image", "GET", "/v1/jobs/%s/images/blend.png" % ("a" * 32)),
            ("bad limit", "GET", "/v1/jobs?limit=zero"),
            ("limit too big", "GET", "/v1/jobs?limit=100000"),
        ):
            response = await client.request(method, path)
            out[label] = (response.status, response.content_type, await response.text())
        out["jobs after all that"] = await (await client.get("/v1/jobs")).json()
    return out


def test_every_malformed_request_is_a_4xx_json_error(tmp_path: Path) -> None:
    result = asyncio.run(_post_all(tmp_path))
    expected = {label: (status, field) for label, _, status, field in CASES}
    expected.update(
        {
            "oversize upload": (413, None),
            "not json content type": (415, None),
            "unknown path": (404, None),
            "no such job": (404, None),
            "wrong method": (405, None),
            "no such image": (404, None),
            "bad limit": (400, "limit"),
            "limit too big": (400, "limit"),
        }
    )
    for label, (status, field) in expected.items():
        got_status, content_type, text = result[label]
        assert got_status == status, (label, got_status, text)
        assert content_type == "application/json", (label, content_type)
        error = json.loads(text)["error"]
        assert error["code"] and error["message"], label
        assert "Traceback" not in text
        if field is not None:
            assert error.get("field") == field, (label, error)
    assert result["jobs after all that"]["jobs"] == []  # nothing malformed was queued


async def _wait_running(client: Any, job_id: str, timeout: float = WAIT_S) -> None:
    """Until the worker has taken the job (a 200-step one: it then runs far longer than the test needs)."""
    deadline = time.monotonic() + timeout
    while True:
        state = (await (await client.get("/v1/jobs/" + job_id)).json())["state"]
        if state == "running":
            return
        assert state == "queued" and time.monotonic() < deadline, (job_id, state)
        await asyncio.sleep(0.02)


async def _fill_queue(output: Path) -> Dict[str, Any]:
    async with app_client(output, max_queue=1) as client:
        long = json.dumps(generate_body(seed=1, steps=200)).encode()
        first = await (await client.post("/v1/jobs", data=long, headers=JSON)).json()
        await _wait_running(client, first["id"])
        second = await client.post("/v1/jobs", data=long, headers=JSON)
        third = await client.post("/v1/jobs", data=long, headers=JSON)
        out = {
            "second": second.status,
            "third": (third.status, third.headers.get("Retry-After"), await third.json()),
            "health": await (await client.get("/v1/health")).json(),
        }
        second_id = (await second.json())["id"]
        await client.post("/v1/jobs/%s/cancel" % second_id)
        after_cancel = await client.post(
            "/v1/jobs", data=json.dumps(generate_body(seed=2)).encode(), headers=JSON
        )
        out["after_cancel"] = after_cancel.status
        await client.post("/v1/jobs/%s/cancel" % first["id"])
        return out


def test_full_queue_answers_429(tmp_path: Path) -> None:
    result = asyncio.run(_fill_queue(tmp_path))
    assert result["second"] == 202
    status, retry_after, body = result["third"]
    assert status == 429 and retry_after
    assert body["error"]["code"] == "queue_full" and "queue is full" in body["error"]["message"]
    assert result["health"]["queue_length"] == 2
    assert result["after_cancel"] == 202  # cancelling the waiting job made room


async def _upload_budget(output: Path) -> Dict[str, Any]:
    async with app_client(output, max_queue=8, max_queued_upload_bytes=1) as client:
        long = await (
            await client.post(
                "/v1/jobs", data=json.dumps(generate_body(seed=1, steps=200)).encode(), headers=JSON
            )
        ).json()
        await _wait_running(client, long["id"])
        body = json.dumps(_reblend()).encode()
        first = await client.post("/v1/jobs", data=body, headers=JSON)
        second = await client.post("/v1/jobs", data=body, headers=JSON)
        generate = await client.post(
            "/v1/jobs", data=json.dumps(generate_body(seed=3)).encode(), headers=JSON
        )
        out = {
            "first": first.status,
            "second": (second.status, await second.json()),
            "generate": generate.status,
        }
        for job in (await (await client.get("/v1/jobs")).json())["jobs"]:
            await client.post("/v1/jobs/%s/cancel" % job["id"])
        return out


def test_queued_uploads_are_bounded(tmp_path: Path) -> None:
    result = asyncio.run(_upload_budget(tmp_path))
    assert result["first"] == 202  # one re-blend always gets in
    status, body = result["second"]
    assert status == 429 and body["error"]["code"] == "queue_full"
    assert result["generate"] == 202  # jobs without uploads are not held back
