"""The ``sdxl`` preset resolved entirely from a Hugging Face cache laid out as the hub writes it
(``models--org--name/refs/main`` + ``snapshots/<rev>/…``), holding the tiny model under the real repo
names. Run in a subprocess because huggingface_hub reads HF_HUB_CACHE once, at import."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from backend.models import catalog, layerdiffuse, tiny

ROOT = Path(__file__).resolve().parents[2]
REVISION = "0123456789abcdef0123456789abcdef01234567"


def snapshot(hub: Path, repo: str) -> Path:
    folder = hub / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(REVISION)
    return folder / "snapshots" / REVISION


@pytest.fixture(scope="module")
def hub(tmp_path_factory, tiny_files):
    hub = tmp_path_factory.mktemp("hub")
    sdxl = snapshot(hub, catalog.SDXL_REPO)
    parts = tiny.build_components(0)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        parts[name].save_pretrained(sdxl / name, variant="fp16")
    # The hub's SDXL repo has the classic vocab.json / merges.txt tokenizer files.
    tiny.write_tokenizer(sdxl / "tokenizer", "<|endoftext|>")
    tiny.write_tokenizer(sdxl / "tokenizer_2", "!")
    (sdxl / "scheduler").mkdir()
    (sdxl / "scheduler" / "scheduler_config.json").write_text(json.dumps(tiny.SCHEDULER_CONFIG))
    (sdxl / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    layer = snapshot(hub, catalog.LD_ORIGINAL_REPO)
    layer.mkdir(parents=True)
    for name in catalog.LD_ORIGINAL_FILES:
        shutil.copy(tiny_files.layer_model / name, layer / name)
    return hub


def run(hub: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(hub))
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def test_sdxl_preset_loads_from_the_cache_offline(hub):
    script = ("import torch\n"
              "from backend.models.loading import LoadOptions, load_bundle\n"
              "from backend.models.tiny import build_bundle\n"
              "b = load_bundle(LoadOptions('sdxl'))\n"
              "m = build_bundle(0)\n"
              "print(b.sources['base'], b.architecture.name, b.transparent_encoder_scale)\n"
              "print(all(torch.equal(b.unet.state_dict()[k], v) for k, v in m.unet.state_dict().items()))\n"
              "n = next(iter(m.transparent_attn.factors))\n"
              "print(torch.equal(b.transparent_attn.factors[n][0], m.transparent_attn.factors[n][0]))\n")
    result = run(hub, "-c", script)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.split("\n")
    assert lines[0] == f"repo: {catalog.SDXL_REPO} tiny 1.0"
    assert lines[1:3] == ["True", "True"]


def test_models_list_shows_the_cache(hub):
    result = run(hub, "-m", "backend", "models", "list")
    assert result.returncode == 0, result.stderr
    assert f"base: {catalog.SDXL_REPO} in the HF cache" in result.stdout
    attn = next(li for li in result.stdout.splitlines() if li.endswith(layerdiffuse.ATTN_ORIGINAL))
    assert "layerdiffuse-attn-lora" in attn and f"hf-cache {catalog.LD_ORIGINAL_REPO}" in attn
    unet = next(li for li in result.stdout.splitlines() if li.endswith("diffusion_pytorch_model.fp16.safetensors")
                and "/unet/" in li)
    assert "diffusers-unet" in unet
    text = next(li for li in result.stdout.splitlines() if li.endswith("text_encoder_2/model.fp16.safetensors"))
    assert "transformers-clip-text" in text
    vae = next(li for li in result.stdout.splitlines() if "/vae/" in li)
    assert "diffusers-vae" in vae
