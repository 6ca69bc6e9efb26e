"""``python -m backend models list|check|download`` as an artist runs them (subprocesses, offline)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from backend.models import layerdiffuse

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "backend", "models", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


def test_list_shows_presets_and_the_files_of_a_comfyui_models_dir(tiny_files):
    result = run("list", "--models-dir", str(tiny_files.root))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "tiny" in out and "sdxl" in out
    assert f"written at {tiny_files.root}" in out
    for name, kind in (("tiny_sdxl.safetensors", "sdxl-original"),
                       (layerdiffuse.ATTN_ORIGINAL, "layerdiffuse-attn-lora"),
                       ("vae_transparent_decoder.safetensors", "layerdiffuse-decoder"),
                       ("vae_transparent_encoder.safetensors", "layerdiffuse-encoder")):
        line = next(li for li in out.splitlines() if li.endswith(name))
        assert kind in line and ("KB" in line or "MB" in line), line
    assert "LayerDiffuse: " + str(tiny_files.layer_model) in out


def test_list_without_anything(tmp_path):
    result = run("list", "--models-dir", str(tmp_path))
    assert result.returncode == 0 and "none in" in result.stdout
    assert "run `layerfusion models download sdxl`" in result.stdout
    assert run("list", "--models-dir", str(tmp_path / "nope")).returncode == 2


def test_check_accepts_each_tiny_file_and_names_its_format(tiny_files):
    for path, kind in ((tiny_files.checkpoint, "sdxl-original"),
                       (tiny_files.layer_model / layerdiffuse.ATTN_ORIGINAL, "layerdiffuse-attn-lora"),
                       (tiny_files.layer_model / "vae_transparent_decoder.safetensors", "layerdiffuse-decoder")):
        result = run("check", str(path))
        assert result.returncode == 0, result.stderr
        assert f"format: {kind}" in result.stdout and "fits: tiny" in result.stdout and "OK" in result.stdout


def test_check_refuses_mismatched_and_truncated_files(tmp_path, tiny_files):
    bad = tmp_path / layerdiffuse.ATTN_ORIGINAL
    save_file({"diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight::lora::0":
               torch.zeros(320, 8)}, str(bad))
    result = run("check", str(bad), "--model", "sdxl")
    assert result.returncode == 1
    assert "INVALID" in result.stderr and "input_blocks.4.1.transformer_blocks.0.attn1.to_q" in result.stderr
    cut = tmp_path / "vae_transparent_decoder.safetensors"
    cut.write_bytes((tiny_files.layer_model / "vae_transparent_decoder.safetensors").read_bytes()[:5000])
    result = run("check", str(cut))
    assert result.returncode == 1 and "truncated" in result.stderr


def test_check_full_size_encoder_and_download_offline(tmp_path):
    from backend.models.transparent_vae import TransparentVAEEncoder

    path = tmp_path / "ld_diffusers_sdxl_vae_transparent_encoder.safetensors"
    save_file({k: v.half() for k, v in TransparentVAEEncoder().state_dict().items()}, str(path))
    result = run("check", str(path))
    assert result.returncode == 0, result.stderr
    assert "fits: sdxl" in result.stdout and "parameters: 1,181,764" in result.stdout and "scale 300" in result.stdout
    result = run("download", "sdxl")
    assert result.returncode == 1 and "offline" in result.stderr


def test_checksum_verification_names_both_digests(tmp_path):
    import hashlib

    import pytest

    from backend.models.download import ChecksumError, RemoteFile, sha256_of, verify

    path = tmp_path / "f.safetensors"
    path.write_bytes(b"layerfusion" * 1000)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert sha256_of(path, chunk=100) == digest
    item = RemoteFile("LayerDiffusion/layerdiffusion-v1", "f.safetensors")
    verify(path, digest, item)
    with pytest.raises(ChecksumError, match=f"SHA-256 {digest} does not match the published 0+"):
        verify(path, "0" * 64, item)


def test_check_a_separate_vae_file(tmp_path):
    from backend.models import ldm_names, tiny

    vae = tiny.build_components(0)["vae"]
    state = {k[len(ldm_names.VAE_PREFIX):]: v.contiguous()
             for k, v in ldm_names.vae_to_ldm(vae.state_dict(), dict(vae.config)).items()}
    path = tmp_path / "sdxl_vae.safetensors"
    save_file(state, str(path))
    result = run("check", str(path))
    assert result.returncode == 0, result.stderr
    assert "format: vae-original" in result.stdout and "fits: tiny" in result.stdout
    result = run("check", str(path), "--model", "sdxl")
    assert result.returncode == 1 and "has shape" in result.stderr
