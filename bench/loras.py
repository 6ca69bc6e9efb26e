"""What LoRAs cost: switching them per job, running with them, and keeping them loaded (issue 11).

Measured on the bench model (the tiny SDXL-shaped architecture with a ~30 M-parameter UNet) with two
kohya LoRAs written in the real format, plus parameter arithmetic for kohya LoRAs on the real SDXL
shapes (meta device). Run: ``python -m bench.loras [--size 256] [--steps 4]``; writes docs/PERFORMANCE.md.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from backend.models.loras import LoraLibrary
from backend.models.tiny import build_bundle
from backend.models.tiny_loras import write_lora
from backend.pipeline.layerfusion import LayerFusionPipeline
from backend.pipeline.loras import LoraAdapters
from bench.pipeline import PROMPTS, WIDE_UNET, timed
from bench.report import machine, table, write_section

RANK = 8  # a common rank for SDXL style LoRAs (kohya's default network_dim is 4; character LoRAs 16-32)


def sdxl_lora_share(rank: int, loras: int = 2) -> float:
    """Resident parameters of SDXL with ``loras`` kohya LoRAs of ``rank`` (every Linear of the UNet's
    transformer stacks and of both text encoders' layers) ÷ SDXL alone, from the real shapes."""
    from backend.models.single_file import SDXL_CONFIG_DIR, meta_modules

    parts = meta_modules(SDXL_CONFIG_DIR)
    base = sum(p.numel() for m in parts.values() for p in m.parameters())
    per_lora = 0
    for name, module in parts["unet"].named_modules():
        if isinstance(module, nn.Linear) and ".attentions." in name:
            per_lora += rank * (module.in_features + module.out_features)
    for part in ("text_encoder", "text_encoder_2"):
        for name, module in parts[part].named_modules():
            if isinstance(module, nn.Linear) and ".layers." in name:
                per_lora += rank * (module.in_features + module.out_features)
    return (base + loras * per_lora) / base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--switches", type=int, default=20, help="switches timed per direction")
    parser.add_argument("--rounds", type=int, default=3, help="alternating triplet rounds; best counts")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    bundle = build_bundle(seed=0, unet_overrides=WIDE_UNET)
    pipe = LayerFusionPipeline.from_bundle(bundle)
    parts = {"unet": bundle.unet, "text_encoder": bundle.text_encoder, "text_encoder_2": bundle.text_encoder_2}
    folder = Path(tempfile.mkdtemp(prefix="bench-loras-"))
    for i, name in enumerate(("style", "character", "other")):
        write_lora(folder / f"{name}.safetensors", "kohya", parts, rank=RANK, alpha=RANK / 2, seed=i)
    library = LoraLibrary([folder])
    pair = [(library.find("style"), 0.8), (library.find("character"), 1.0)]
    other = [(library.find("other"), 0.6), (library.find("style"), 0.4)]

    def triplet():
        return pipe(*PROMPTS, height=args.size, width=args.size, num_inference_steps=args.steps,
                    guidance_scale=7.0, generator=torch.Generator().manual_seed(0))

    adapters = LoraAdapters(pipe, capacity=4)
    bytes_without = bundle.parameter_bytes
    cold = timed(lambda: adapters.activate(pair))
    bytes_cached = bundle.parameter_bytes  # the two files cached (and active)
    cold_other = timed(lambda: adapters.activate(other))
    adapters.activate([])
    triplet()  # warm-up
    # Rounds alternate with and without, so a busy moment of the shared machine hurts both alike.
    t_plain = t_loras = float("inf")
    for _ in range(args.rounds):
        adapters.activate([])
        t_plain = min(t_plain, timed(triplet))
        adapters.activate(pair)
        t_loras = min(t_loras, timed(triplet))
    switches = []
    for _ in range(args.switches):
        for choice in (other, pair, []):
            start = time.perf_counter()
            adapters.activate(choice)
            switches.append(time.perf_counter() - start)
    switch = statistics.median(switches)
    rows = [
        ("LoRA switch per job (both sets cached) ÷ a triplet with two LoRAs",
         f"{switch * 1e3:.1f} ms ÷ {t_loras:.2f} s", f"**{switch / t_loras:.4f}**", "≤ 0.05"),
        ("first use of two LoRA files (read, convert, wrap) ÷ a triplet", f"{cold:.2f} s ÷ {t_loras:.2f} s",
         f"{cold / t_loras:.3f}", "—"),
        ("first use of one more file ÷ a triplet", f"{cold_other:.2f} s ÷ {t_loras:.2f} s",
         f"{cold_other / t_loras:.3f}", "—"),
        ("triplet with two LoRAs active ÷ without", f"{t_loras:.2f} s ÷ {t_plain:.2f} s", f"{t_loras / t_plain:.2f}", "—"),
        (f"resident parameters, two rank-{RANK} LoRAs cached ÷ none (bench model)",
         f"{bytes_cached / 1e6:.1f} MB ÷ {bytes_without / 1e6:.1f} MB", f"**{bytes_cached / bytes_without:.3f}**",
         "≤ 1.05"),
        (f"resident parameters, two rank-{RANK} LoRAs ÷ none (real SDXL shapes)", "UNet transformers + both text encoders",
         f"**{sdxl_lora_share(RANK):.3f}**", "≤ 1.05"),
        ("… two rank-32 LoRAs (real SDXL shapes)", "the same layers", f"{sdxl_lora_share(32):.3f}", "—"),
    ]
    body = (f"`python -m bench.loras --size {args.size} --steps {args.steps} --switches {args.switches}` on {machine()}.\n"
            f"Bench model: the tiny SDXL-shaped architecture with its UNet widened (channels "
            f"{WIDE_UNET['block_out_channels']}), {args.size}×{args.size}, {args.steps} Euler steps, CFG 7. LoRAs: kohya "
            f"files of rank {RANK} (alpha {RANK // 2}) on every Linear of the UNet's transformer stacks and of both text "
            "encoders, written in the real format and loaded through the server's code (diffusers' converter, PEFT "
            "adapters). A switch is the median of "
            f"{3 * args.switches} `activate` calls cycling two-LoRA set → another set → none; triplets are the best "
            f"of {args.rounds} rounds alternating with and without LoRAs. No GPU was lent for this measurement.\n\n"
            + table(rows, ("measure", "figures", "ratio", "target"))
            + "\n\nA switch sets adapter scales; it never loads or merges weights, so it does not grow with the model. "
              "The bench model's text encoders are as wide as its UNet's blocks are narrow, so LoRAs weigh more "
              "there than on SDXL (the real-shape rows). Measured as adapters (the server's default on the CPU), "
              "running with LoRAs costs the extra low-rank products per targeted layer; on a GPU the server "
              "folds the UNet's LoRAs into its weights while the choice lasts, so a switch there also restores "
              "and folds (see the fast preset's folding row).")
    print(body)
    if not args.no_write:
        write_section("LoRAs", body)


if __name__ == "__main__":
    main()
