"""The GPU benchmark's model and jobs: SDXL's real shapes are what it builds (checked on the meta
device against SDXL's published sizes), and its jobs run end to end through the engine (on the tiny
model, on the CPU), so the script a GPU session runs once is known to work before it gets there."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import torch

from bench.sdxl_shapes import random_sdxl

ROOT = Path(__file__).resolve().parents[2]
SDXL_UNET_PARAMETERS = 2_567_463_684  # stabilityai/stable-diffusion-xl-base-1.0's UNet
SDXL_TRANSFORMER_BLOCKS = 70  # 2x2 + 2x2x10 (down) + 10 (mid) + 3x2 + 3x10 (up)


def test_the_model_has_sdxl_and_layerdiffuse_shapes_in_the_asked_dtype() -> None:
    bundle = random_sdxl(torch.device("meta"), torch.float16)
    assert torch.get_default_dtype() == torch.float32  # set back after building
    assert sum(p.numel() for p in bundle.unet.parameters()) == SDXL_UNET_PARAMETERS
    assert bundle.text_encoder.config.hidden_size == 768 and bundle.text_encoder_2.config.hidden_size == 1280
    # q, k, v and out of attn1 and attn2 in every transformer block, at LayerDiffuse's rank 256
    assert len(bundle.transparent_attn) == SDXL_TRANSFORMER_BLOCKS * 2 * 4 and bundle.transparent_attn.rank == 256
    bundle.transparent_attn.check_against(bundle.unet)
    decoder_widths = [m.out_channels for m in bundle.transparent_decoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert max(decoder_widths) == 512  # the published decoder's width, not the tiny one's
    for module in (bundle.unet, bundle.vae, bundle.text_encoder, bundle.text_encoder_2,
                   bundle.transparent_decoder, bundle.transparent_encoder):
        assert {p.dtype for p in module.parameters()} == {torch.float16}
    assert {t.dtype for pair in bundle.transparent_attn.factors.values() for t in pair} == {torch.float16}
    assert bundle.architecture.name == "sdxl" and bundle.scheduler_config["num_train_timesteps"] == 1000


def test_the_jobs_run_through_the_engine_and_report_each_figure() -> None:
    performance = ROOT / "docs" / "PERFORMANCE.md"
    before = performance.read_bytes()
    run = subprocess.run([sys.executable, "-m", "bench.sdxl_shapes", "--shapes", "tiny", "--device", "cpu",
                          "--size", "128", "--region", "32", "--rounds", "1", "--no-write"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = {line.split(" | ")[0].strip("| "): line for line in run.stdout.splitlines() if line.startswith("| ")}
    seconds = {label: float(m.group(1)) for label, line in rows.items()
               if (m := re.search(r"\| \**([0-9.]+) s\**", line))}
    assert set(seconds) == {"fast triplet 128² (4 steps, guidance 1)", "standard triplet 128² (25 steps, CFG 7)",
                            "fast re-blend of the whole 128² canvas (strength 0.5)",
                            next(label for label in rows if label.startswith("fast local re-blend"))}
    assert all(value > 0 for value in seconds.values())
    ratio = float(re.search(r"\*\*([0-9.]+)\*\*", rows["fast triplet ÷ standard triplet"]).group(1))
    fast, standard = seconds["fast triplet 128² (4 steps, guidance 1)"], seconds["standard triplet 128² (25 steps, CFG 7)"]
    assert abs(ratio - fast / standard) < 0.02  # the seconds are printed rounded
    crop = re.search(r"crop (\d+)×(\d+)", run.stdout)
    assert crop and 32 <= int(crop.group(1)) < 128 and 32 <= int(crop.group(2)) < 128  # the crop, not the canvas
    assert performance.read_bytes() == before  # --no-write
