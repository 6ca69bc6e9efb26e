"""The job kinds on the artist's own layers: what the protocol itself refuses, naming the field."""
import base64
import io

import pytest
from PIL import Image

from shared.fields import ProtocolError
from shared.protocol import (
    JOB_REQUESTS,
    MAX_FOREGROUNDS,
    HarmonizeRequest,
    JobKind,
    compose_blend_prompt,
    parse_job_request,
    request_params,
)


def png(mode="RGBA", size=(64, 64)):
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


ADD_FG = {"kind": "add_foreground", "background_png": png("RGB"), "foreground_prompt": "a cat"}
ADD_BG = {"kind": "add_background", "foreground_png": png(), "background_prompt": "a beach"}
HARMONIZE = {"kind": "harmonize", "background_png": png("RGB"), "foregrounds": [{"png": png()}]}

BAD = [
    ({**ADD_FG, "target": {"x": 0, "y": 0, "width": 31, "height": 64}}, "target", "too small"),
    ({**ADD_FG, "target": {"x": 40, "y": 0, "width": 32, "height": 32}}, "target", "outside"),
    ({**ADD_FG, "target": {"x": -1, "y": 0, "width": 32, "height": 32}}, "target.x", "at least 0"),
    ({**ADD_FG, "options": {"prior_mode": "online"}}, "options.prior_mode", "restart"),
    ({**ADD_FG, "options": {"interaction": "independent"}}, "options.interaction", "fuses"),
    ({**ADD_FG, "background_png": png("L")}, "background_png", "RGB or RGBA"),
    ({**ADD_BG, "foreground_png": png("RGB")}, "foreground_png", "RGBA"),
    ({**ADD_BG, "foreground_png": png(size=(68, 64))}, "foreground_png", "multiple of 8"),
    ({**HARMONIZE, "foregrounds": []}, "foregrounds", "at least 1"),
    ({**HARMONIZE, "foregrounds": [{"png": png()}] * (MAX_FOREGROUNDS + 1)}, "foregrounds", "at most 4"),
    ({**HARMONIZE, "foregrounds": [{"png": png()}, {"png": png(size=(64, 72))}]}, "foregrounds[1].png", "same size"),
    ({**HARMONIZE, "foregrounds": [{"png": png(), "colour": 1}]}, "foregrounds[0].colour", "unknown field"),
    ({**HARMONIZE, "strength": 0}, "strength", ""),
    ({"kind": "paint"}, "kind", "'add_foreground'"),
]


@pytest.mark.parametrize("body,field,words", BAD)
def test_bad_requests_name_the_field(body, field, words):
    with pytest.raises(ProtocolError) as err:
        parse_job_request(body)
    assert err.value.field == field and words in err.value.message


def test_every_kind_parses_and_keeps_no_upload_in_its_params():
    for body in (ADD_FG, ADD_BG, HARMONIZE):
        request = parse_job_request(body)
        assert request.kind is JobKind(body["kind"]) and request.size == (64, 64)
        params = request_params(request)
        assert "png" not in str(params).replace("_png", "") and not any(k.endswith("_png") for k in params)
        assert set(request.uploads()) and all(v for v in request.uploads().values())
    assert set(JOB_REQUESTS) == set(JobKind)


def test_harmonize_params_keep_each_layers_prompt():
    request = parse_job_request({**HARMONIZE, "foregrounds": [{"png": png(), "prompt": "a lamp"}, {"png": png()}]})
    assert isinstance(request, HarmonizeRequest)
    assert request_params(request)["foregrounds"] == [{"prompt": "a lamp"}, {"prompt": ""}]
    assert list(request.uploads()) == ["background", "foreground0", "foreground1"]


def test_blend_prompt_leaves_out_an_undescribed_layer():
    assert compose_blend_prompt("a cat", "") == "a cat"
    assert compose_blend_prompt("", "a beach") == "a beach"
    assert compose_blend_prompt("a cat", "a beach") == "a cat, a beach"
    assert compose_blend_prompt("a cat", "a beach", " mine ") == "mine"
