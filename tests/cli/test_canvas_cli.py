"""``add-foreground``, ``add-background`` and ``harmonize`` from the command line, as a user runs them."""
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def backend(*args):
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)


def canvas(path):
    Image.fromarray((np.random.default_rng(2).random((64, 64, 3)) * 255).astype(np.uint8), "RGB").save(path)
    return path


def layer(path, x, y, side=24):
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    image.paste(Image.new("RGBA", (side, side), (200, 60, 40, 255)), (x, y))
    image.save(path)
    return path


def ora_layers(path):
    """(name, composite-op, pixels) of every layer in stack order, top first, groups flattened."""
    with zipfile.ZipFile(path) as ora:
        stack = ET.fromstring(ora.read("stack.xml"))
        out = []
        for element in stack.iter("layer"):
            with ora.open(element.get("src")) as f:
                out.append((element.get("name"), element.get("composite-op"), np.asarray(Image.open(f))))
        return out


def test_add_foreground_into_a_picture(tmp_path):
    picture = canvas(tmp_path / "painting.png")
    out = tmp_path / "out"
    result = backend("add-foreground", "--background", str(picture), "--fg", "a cat", "--target", "16,8,40,48",
                     "--steps", "2", "--seed", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    names = {p.name for p in out.iterdir()}
    assert {"foreground.png", "blend.png", "params.json", "layers.ora"} <= names and "background.png" not in names
    params = json.loads((out / "params.json").read_text())
    assert params["kind"] == "add_foreground" and params["target"] == {"x": 16, "y": 8, "width": 40, "height": 48}
    alpha = np.asarray(Image.open(out / "foreground.png"))[..., 3].astype(float)
    assert alpha[8:56, 16:56].sum() >= 0.9 * alpha.sum()
    layers = ora_layers(out / "layers.ora")
    assert [name for name, _, _ in layers] == ["Blend", "Foreground", "Background"]
    assert np.array_equal(layers[2][2], np.asarray(Image.open(picture)))  # the artist's pixels, untouched


def test_add_background_behind_a_layer(tmp_path):
    mine = layer(tmp_path / "mine.png", 20, 20)
    out = tmp_path / "out"
    result = backend("add-background", "--foreground", str(mine), "--bg", "a meadow", "--steps", "2",
                     "--seed", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    layers = ora_layers(out / "layers.ora")
    assert [name for name, _, _ in layers] == ["Blend", "Foreground", "Background"]
    assert np.array_equal(layers[1][2], np.asarray(Image.open(mine)))


def test_harmonize_two_layers_with_blend_layers(tmp_path):
    picture = canvas(tmp_path / "bg.png")
    low, high = layer(tmp_path / "low.png", 4, 4), layer(tmp_path / "high.png", 30, 30)
    out = tmp_path / "out"
    result = backend("harmonize", "--background", str(picture), "--layer", f"{low}:a red box",
                     "--layer", str(high), "--steps", "4", "--seed", "3", "--blend-layers", "--out", str(out))
    assert result.returncode == 0, result.stderr
    params = json.loads((out / "params.json").read_text())
    assert params["foregrounds"] == [{"prompt": "a red box"}, {"prompt": ""}] and params["unet_steps"] == 2
    names = {p.name for p in out.iterdir()}
    assert {"blend.png", "shadows.png", "light.png", "foreground_shadows.png", "foreground_light.png"} <= names
    layers = {name: (op, pixels) for name, op, pixels in ora_layers(out / "layers.ora")}
    assert np.array_equal(layers["Layer 1"][1], np.asarray(Image.open(low)))
    assert np.array_equal(layers["Layer 2"][1], np.asarray(Image.open(high)))
    assert layers["Shadows"][0] == "svg:multiply" and layers["Light"][0] == "svg:screen"


def test_bad_input_names_the_field(tmp_path):
    picture = canvas(tmp_path / "bg.png")
    opaque = tmp_path / "opaque.png"
    Image.new("RGBA", (64, 64), (1, 2, 3, 255)).save(opaque)
    for args, words in (
        (["add-foreground", "--background", str(picture), "--fg", "a cat", "--target", "50,0,40,40"], "(target)"),
        (["add-foreground", "--background", str(picture), "--fg", "a cat", "--target", "1,2"], "(target)"),
        (["add-background", "--foreground", str(opaque), "--bg", "a meadow"], "no transparent pixel"),
        (["harmonize", "--background", str(picture), "--layer", str(tmp_path / "missing.png")], "cannot read"),
    ):
        result = backend(*args, "--steps", "1", "--out", str(tmp_path / "never"))
        assert result.returncode == 2 and words in result.stderr, (args, result.stderr)
        assert not (tmp_path / "never").exists()
