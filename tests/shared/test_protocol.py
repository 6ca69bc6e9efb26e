"""The wire protocol: parsing, validation errors that name the field, JSON forms, PNG headers."""
from __future__ import annotations

import base64
import io
import struct
import zlib

import pytest

from shared.fields import ProtocolError, json_schema, parse, to_json
from shared.png import png_info
from shared.protocol import (
    GenerateRequest,
    JobState,
    JobStatus,
    MaskSource,
    ReblendRequest,
    compose_blend_prompt,
    parse_job_request,
)
from shared.sizes import generation_size


def png_bytes(width: int, height: int, color_type: int) -> bytes:
    """A minimal valid PNG header (and no pixels): enough for the header checks."""
    body = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + body + struct.pack(">I", zlib.crc32(b"IHDR" + body))
    return b"\x89PNG\r\n\x1a\n" + chunk


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


GOOD = {"kind": "generate", "foreground_prompt": "a wine glass", "background_prompt": "a table",
        "width": 512, "height": 768}


def test_generate_defaults_and_round_trip() -> None:
    req = parse_job_request(GOOD)
    assert isinstance(req, GenerateRequest)
    assert (req.steps, req.guidance, req.seed, req.blend.value) == (25, 7.0, None, "generative")
    assert req.options.mask_source is MaskSource.product
    again = parse_job_request(to_json(req))
    assert again == req
    assert "seed" not in to_json(req)  # unset optionals stay off the wire


@pytest.mark.parametrize(
    "change, field, code",
    [
        ({"foreground_prompt": "   "}, "foreground_prompt", "invalid_field"),
        ({"background_prompt": ""}, "background_prompt", "invalid_field"),
        ({"width": 500}, "width", "invalid_field"),
        ({"height": 8}, "height", "invalid_field"),
        ({"width": 4096, "height": 8192}, "height", "invalid_field"),
        ({"width": 4096, "height": 4096}, "width", "invalid_size"),
        ({"steps": 0}, "steps", "invalid_field"),
        ({"steps": 2.5}, "steps", "invalid_field"),
        ({"steps": True}, "steps", "invalid_field"),
        ({"guidance": "7"}, "guidance", "invalid_field"),
        ({"seed": -1}, "seed", "invalid_field"),
        ({"blend": "multiply"}, "blend", "invalid_field"),
        ({"options": {"boundary": 0.4}}, "options.boundary", "renamed_field"),
        ({"options": {"softness": 0.4}}, "options.softness", "renamed_field"),
        ({"options": {"threshold": 1.5}}, "options.threshold", "invalid_field"),
        ({"options": {"boundary_coefficient": -1}}, "options.boundary_coefficient", "invalid_field"),
        ({"options": {"boundary_coefficient": "infinite"}}, "options.boundary_coefficient", "invalid_field"),
        ({"options": {"content_prior": "global"}}, "options.content_prior", "invalid_field"),
        ({"options": {"interaction": "none"}}, "options.interaction", "invalid_field"),
        ({"options": {"mask_source": "both"}}, "options.mask_source", "invalid_field"),
        ({"options": {"prior_layer": "up_blocks.1; rm -rf"}}, "options.prior_layer", "invalid_field"),
        ({"options": {"nonsense": 1}}, "options.nonsense", "unknown_field"),
        ({"colour": "red"}, "colour", "unknown_field"),
        ({"foreground_prompt": "x" * 2001}, "foreground_prompt", "invalid_field"),
    ],
)
def test_generate_errors_name_the_field(change: dict, field: str, code: str) -> None:
    with pytest.raises(ProtocolError) as err:
        parse_job_request({**GOOD, **change})
    assert (err.value.field, err.value.code) == (field, code)
    assert field.split(".")[-1] in err.value.message
    # What the schema can say is a 400; only the pixel budget (no JSON Schema for a product) is 422.
    assert err.value.status == (422 if code == "invalid_size" else 400)


def test_an_integral_float_is_an_integer() -> None:
    """JSON Schema's "integer" takes 25.0, so the parser must too (25.5 stays refused, above)."""
    req = parse_job_request({**GOOD, "steps": 25.0, "width": 512.0})
    assert (req.steps, req.width) == (25, 512) and type(req.steps) is int


def test_kind_is_required_and_fixed_per_request() -> None:
    no_kind = {k: v for k, v in GOOD.items() if k != "kind"}
    with pytest.raises(ProtocolError) as err:
        parse(GenerateRequest, no_kind)
    assert (err.value.field, err.value.code, err.value.status) == ("kind", "missing_field", 400)
    with pytest.raises(ProtocolError) as err:
        parse(GenerateRequest, {**GOOD, "kind": "reblend"})
    assert (err.value.field, err.value.code) == ("kind", "invalid_field")


def test_missing_fields_and_kinds() -> None:
    body = dict(GOOD)
    del body["width"]
    with pytest.raises(ProtocolError) as err:
        parse_job_request(body)
    assert (err.value.code, err.value.field) == ("missing_field", "width")
    for bad_kind, code in ((None, "missing_field"), ("paint", "invalid_field")):
        with pytest.raises(ProtocolError) as err:
            parse_job_request({**GOOD, "kind": bad_kind} if bad_kind else {k: v for k, v in GOOD.items() if k != "kind"})
        assert err.value.code == code and err.value.field == "kind"
    with pytest.raises(ProtocolError) as err:
        parse_job_request([GOOD])
    assert err.value.code == "invalid_body"


def reblend_body(fg: bytes, bg: bytes) -> dict:
    return {"kind": "reblend", "foreground_png": b64(fg), "background_png": b64(bg),
            "foreground_prompt": "a glass", "background_prompt": "a table"}


def test_reblend_checks_images_before_any_work() -> None:
    req = parse_job_request(reblend_body(png_bytes(256, 128, 6), png_bytes(256, 128, 2)))
    assert isinstance(req, ReblendRequest) and req.size == (256, 128) and req.strength == 0.5
    cases = [
        (png_bytes(256, 128, 2), png_bytes(256, 128, 2), "foreground_png", "RGB"),  # no alpha
        (png_bytes(256, 128, 6), png_bytes(256, 128, 0), "background_png", "L"),  # grey
        (png_bytes(256, 128, 6), png_bytes(128, 128, 2), "foreground_png", "same size"),
        (png_bytes(250, 128, 6), png_bytes(250, 128, 2), "foreground_png", "multiple of 8"),
        (b"GIF89a" + b"\0" * 40, png_bytes(256, 128, 2), "foreground_png", "not a PNG"),
    ]
    for fg, bg, field, words in cases:
        with pytest.raises(ProtocolError) as err:
            parse_job_request(reblend_body(fg, bg))
        assert err.value.field == field and words in err.value.message
    body = reblend_body(png_bytes(256, 128, 6), png_bytes(256, 128, 2))
    for strength in (0, -0.1, 1.01):
        with pytest.raises(ProtocolError) as err:
            parse_job_request({**body, "strength": strength})
        assert err.value.field == "strength"
    with pytest.raises(ProtocolError) as err:
        parse_job_request({**body, "foreground_png": "@@not base64@@"})
    assert err.value.field == "foreground_png" and "base64" in err.value.message


def test_png_info_reads_real_pngs_and_refuses_corrupt_headers() -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGBA", (40, 24)).save(buf, "PNG")
    info = png_info(buf.getvalue())
    assert (info.width, info.height, info.mode, info.has_alpha) == (40, 24, "RGBA", True)
    broken = bytearray(buf.getvalue())
    broken[20] ^= 0xFF  # inside IHDR: the CRC no longer matches
    with pytest.raises(ValueError, match="corrupt"):
        png_info(bytes(broken))


def test_schema_matches_the_dataclasses() -> None:
    refs: dict = {}
    schema = json_schema(GenerateRequest, refs)
    assert set(schema["required"]) == {"foreground_prompt", "background_prompt", "width", "height", "kind"}
    assert schema["properties"]["kind"] == {"const": "generate", "description": "Always 'generate'."}
    assert schema["properties"]["width"]["multipleOf"] == 8
    assert schema["properties"]["steps"] == {
        "type": "integer", "minimum": 1, "maximum": 200, "default": 25,
        "description": "Denoising steps of a full schedule; a job with a strength runs strength x steps of them."}
    assert schema["properties"]["options"] == {"$ref": "#/components/schemas/MethodOptions", "description": "Method options."}
    assert refs["MethodOptions"]["properties"]["mask_source"]["enum"] == ["product", "self", "cross"]
    assert schema["additionalProperties"] is False


def test_status_json_and_final_states() -> None:
    status = parse(JobStatus, {"id": "abc", "kind": "generate", "state": "done",
                               "images": {"blend": "/v1/jobs/abc/images/blend.png"}})
    assert status.state.final and not JobState.running.final
    assert to_json(status)["progress"] == {"step": 0, "total": 0, "phase": "denoise"}


def test_blend_prompt_composition() -> None:
    assert compose_blend_prompt(" a glass ", "a table") == "a glass, a table"
    assert compose_blend_prompt("a glass", "a table", "a glass on a table") == "a glass on a table"


@pytest.mark.parametrize("w, h", [(1920, 1080), (100, 100), (768, 1024), (4000, 3000), (1000, 1001)])
def test_generation_size_keeps_aspect_near_a_megapixel(w: int, h: int) -> None:
    gw, gh = generation_size(w, h)
    assert gw % 64 == 0 and gh % 64 == 0
    assert abs((gw / gh) / (w / h) - 1) < 0.05
    assert abs(gw * gh / 2**20 - 1) < 0.15


def test_generation_size_caps_extreme_aspects() -> None:
    assert generation_size(100, 100) == (1024, 1024)
    gw, gh = generation_size(10000, 100)
    assert gw / gh == 4.0


def test_renamed_options_name_their_replacement() -> None:
    for old, new in (("boundary", "threshold"), ("softness", "boundary_coefficient")):
        with pytest.raises(ProtocolError) as err:
            parse_job_request({**GOOD, "options": {old: 0.5}})
        assert "'options.%s'" % new in err.value.message and err.value.status == 400


def test_boundary_coefficient_takes_inf_and_round_trips() -> None:
    req = parse_job_request({**GOOD, "options": {"boundary_coefficient": "inf"}})
    assert req.options.boundary_coefficient == float("inf")
    assert to_json(req)["options"]["boundary_coefficient"] == "inf"
    assert parse_job_request(to_json(req)) == req
    schema = json_schema(type(req.options), {})["properties"]["boundary_coefficient"]
    assert {"const": "inf"} in schema["anyOf"] and schema["anyOf"][0]["exclusiveMinimum"] == 0.0


def test_not_blank_means_the_same_to_the_server_and_to_the_schema() -> None:
    """A fuzzer found "\\x1e" (blank to Python's str.strip, not to the schema's ECMA "\\S"): the one
    character class now decides on both sides."""
    import jsonschema_rs

    from shared.protocol import LoraChoice

    refs: dict = {}
    validate = jsonschema_rs.validator_for(json_schema(LoraChoice, refs)["properties"]["name"])
    for text in ["\x1e", "\x1c\x1f", "\x85", "\ufeff", "\u3000 ", " \t\n", "\u180e", "x", " a ", "\u00df"]:
        try:
            parse(LoraChoice, {"name": text})
            accepted = True
        except ProtocolError:
            accepted = False
        assert accepted == validate.is_valid(text), repr(text)
    assert not validate.is_valid("\x1e") and validate.is_valid("\u180e")
