"""``python -m backend generate`` / ``reblend`` end to end, as a user runs them."""
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile

import numpy as np
import pytest
from PIL import Image

from shared.protocol import MAP_NAMES

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def backend(*args):
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    result = backend("generate", "--fg", "a glass of water", "--bg", "a wooden table", "--size", "64x64",
                     "--steps", "3", "--seed", "11", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "3/4" in result.stderr or "4/4" in result.stderr  # the progress bar counted the steps
    return out


def test_generate_writes_layers_params_and_openraster(generated):
    maps = {name + ".png" for name in MAP_NAMES}  # what the method saw, beside the layers
    assert {p.name for p in generated.iterdir()} == {"foreground.png", "background.png", "blend.png",
                                                     "params.json", "layers.ora"} | maps
    assert {Image.open(generated / name).size for name in maps} == {(64, 64)}
    fg = Image.open(generated / "foreground.png")
    assert fg.mode == "RGBA" and fg.size == (64, 64)
    assert np.asarray(fg)[..., 3].std() > 1
    params = json.loads((generated / "params.json").read_text())
    assert params["seed"] == 11 and params["steps"] == 3 and params["model"] == "tiny"
    with zipfile.ZipFile(generated / "layers.ora") as ora:
        first = ora.infolist()[0]
        assert first.filename == "mimetype" and first.compress_type == zipfile.ZIP_STORED
        assert ora.read("mimetype") == b"image/openraster"
        stack = ET.fromstring(ora.read("stack.xml"))
        layers = stack.findall("./stack/layer")
        assert [layer.get("name") for layer in layers] == ["Blend", "Foreground", "Background"]
        assert (stack.get("w"), stack.get("h")) == ("64", "64")
        with ora.open(layers[1].get("src")) as f:
            assert np.array_equal(np.asarray(Image.open(f)), np.asarray(fg))


def test_reblend_writes_a_new_blend(generated, tmp_path):
    result = backend("reblend", "--foreground", str(generated / "foreground.png"), "--background",
                     str(generated / "background.png"), "--fg", "a glass of water", "--bg", "a wooden table",
                     "--steps", "4", "--strength", "0.5", "--seed", "2", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert {p.name for p in tmp_path.iterdir()} == {"blend.png", "params.json", "layers.ora"}
    assert Image.open(tmp_path / "blend.png").size == (64, 64)
    assert json.loads((tmp_path / "params.json").read_text())["strength"] == 0.5
    # The file opens as the whole picture: the new blend over the given layers, those unchanged.
    with zipfile.ZipFile(tmp_path / "layers.ora") as ora:
        layers = ET.fromstring(ora.read("stack.xml")).findall("./stack/layer")
        assert [layer.get("name") for layer in layers] == ["Blend", "Foreground", "Background"]
        for layer, name in zip(layers[1:], ("foreground", "background")):
            with ora.open(layer.get("src")) as f:
                assert np.array_equal(np.asarray(Image.open(f)), np.asarray(Image.open(generated / f"{name}.png")))


@pytest.mark.parametrize("args,field", [
    (["generate", "--fg", "", "--bg", "b"], "foreground_prompt"),
    (["generate", "--fg", "a", "--bg", "b", "--size", "65x64"], "width"),
    (["generate", "--fg", "a", "--bg", "b", "--size", "big"], "size"),
    (["generate", "--fg", "a", "--bg", "b", "--size", "2048x2048"], "width"),
    (["generate", "--fg", "a", "--bg", "b", "--steps", "0"], "steps"),
    (["reblend", "--foreground", "missing.png", "--background", "missing.png", "--fg", "a", "--bg", "b"],
     "foreground_png"),
])
def test_bad_input_exits_with_the_field_named(args, field, tmp_path):
    result = backend(*args, "--out", str(tmp_path / "x"))
    assert result.returncode == 2
    assert f"error ({field}):" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "x").exists()


def test_reblend_refuses_rgb_foreground(generated, tmp_path):
    result = backend("reblend", "--foreground", str(generated / "background.png"), "--background",
                     str(generated / "background.png"), "--fg", "a", "--bg", "b", "--out", str(tmp_path / "x"))
    assert result.returncode == 2 and "error (foreground_png): 'foreground_png' must be an RGBA PNG" in result.stderr


def test_missing_real_model_is_a_clear_message(tmp_path):
    result = backend("generate", "--fg", "a", "--bg", "b", "--model", "sdxl", "--models-dir", str(tmp_path),
                     "--out", str(tmp_path / "x"))
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in result.stderr


def test_reblend_refuses_a_truncated_png(generated, tmp_path):
    data = (generated / "foreground.png").read_bytes()
    broken = tmp_path / "broken.png"
    broken.write_bytes(data[: len(data) // 2])  # the header (and its size) still reads fine
    result = backend("reblend", "--foreground", str(broken), "--background", str(generated / "background.png"),
                     "--fg", "a", "--bg", "b", "--out", str(tmp_path / "x"))
    assert result.returncode == 2 and "error (foreground_png): 'foreground_png' could not be decoded" in result.stderr
    assert "Traceback" not in result.stderr


def test_out_of_memory_is_one_plain_line(tmp_path, monkeypatch, capsys):
    """torch running out of memory inside the UNet: the command says what to try, exits 1, no traceback."""
    import torch
    from diffusers import UNet2DConditionModel

    from backend.cli import main

    def exhausted(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(UNet2DConditionModel, "forward", exhausted)
    code = main(["generate", "--fg", "a glass", "--bg", "a table", "--size", "64x64", "--steps", "2",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1
    assert "ran out of memory at 64x64" in err and "--cpu-offload" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing half-written
