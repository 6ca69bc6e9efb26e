"""``--lora NAME[:STRENGTH]`` on the command line, and LoRAs in ``models list``."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.cli.generate import parse_lora
from backend.models.tiny import build_components
from backend.models.tiny_loras import write_lora
from shared.fields import ProtocolError

ROOT = Path(__file__).resolve().parents[2]
JOB = ("generate", "--fg", "a glass", "--bg", "a table", "--size", "64x64", "--steps", "2", "--seed", "3")


def backend(*args):
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("loras")
    write_lora(folder / "ink.safetensors", "kohya", build_components(seed=2), scale=0.5)
    return folder


def test_parse_lora() -> None:
    assert parse_lora("ink") == {"name": "ink", "strength": 1.0}
    assert parse_lora("styles/ink.safetensors:-0.5") == {"name": "styles/ink.safetensors", "strength": -0.5}
    with pytest.raises(ProtocolError, match="strength after ':' must be a number"):
        parse_lora("ink:strong")


def test_generate_with_a_lora_differs_and_records_it(lora_dir: Path, tmp_path: Path) -> None:
    plain = backend(*JOB, "--out", str(tmp_path / "plain"))
    styled = backend(*JOB, "--out", str(tmp_path / "ink"), "--lora-dir", str(lora_dir), "--lora", "ink:0.8")
    assert plain.returncode == 0 and styled.returncode == 0, styled.stderr
    params = json.loads((tmp_path / "ink" / "params.json").read_text())
    assert params["loras"] == [{"name": "ink", "strength": 0.8}]
    a, b = (np.asarray(Image.open(tmp_path / d / "blend.png")) for d in ("plain", "ink"))
    assert np.abs(a.astype(int) - b.astype(int)).max() > 0


def test_bad_loras_are_cli_errors_naming_them(lora_dir: Path, tmp_path: Path) -> None:
    missing = backend(*JOB, "--out", str(tmp_path / "x"), "--lora-dir", str(lora_dir), "--lora", "nope")
    assert missing.returncode == 2
    assert "error (loras[0].name): no LoRA named 'nope'" in missing.stderr and "Traceback" not in missing.stderr
    strong = backend(*JOB, "--out", str(tmp_path / "y"), "--lora-dir", str(lora_dir), "--lora", "ink:9")
    assert strong.returncode == 2 and "'loras[0].strength' must be at most 4.0" in strong.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_models_list_shows_loras(lora_dir: Path) -> None:
    result = backend("models", "list", "--lora-dir", str(lora_dir))
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if "ink.safetensors" in line)
    assert "kohya" in line and "tiny" in line


def test_fast_runs_the_distilled_preset_at_its_own_steps(tmp_path: Path) -> None:
    folder = tmp_path / "loras"
    write_lora(folder / "sdxl_lightning_4step_lora.safetensors", "kohya", build_components(seed=2), text_encoders=False)
    fast = ("generate", "--fg", "a glass", "--bg", "a table", "--size", "64x64", "--seed", "3", "--fast",
            "--lora-dir", str(folder), "--fast-lora", "sdxl_lightning_4step_lora.safetensors")
    result = backend(*fast, "--out", str(tmp_path / "fast"))
    assert result.returncode == 0, result.stderr
    params = json.loads((tmp_path / "fast" / "params.json").read_text())
    assert (params["speed"], params["steps"], params["guidance"]) == ("fast", 4, 1.0)
    assert params["options"]["sampler"] == "euler_trailing"
    too_many = backend(*fast, "--steps", "30", "--out", str(tmp_path / "slow"))
    assert too_many.returncode == 2 and "error (steps): the fast preset (lightning" in too_many.stderr
    unnamed = backend(*JOB, "--out", str(tmp_path / "x"), "--fast-lora", "style.safetensors")
    assert unnamed.returncode == 2 and "cannot tell which distillation" in unnamed.stderr
    assert "Traceback" not in too_many.stderr + unnamed.stderr
    none = backend(*JOB, "--fast", "--out", str(tmp_path / "y"))
    assert none.returncode == 2 and "error (speed): no fast preset is configured" in none.stderr
