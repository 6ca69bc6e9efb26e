"""What the jobs on the artist's own layers cost next to a triplet (issue 12).

On the bench model (the tiny SDXL-shaped architecture with its UNet widened), one size and step count
for every kind; rounds alternate the kinds so a busy moment of the shared machine hurts all alike, and
the best round counts. Run: ``python -m bench.canvas_jobs [--size 256] [--steps 8]``; writes
docs/PERFORMANCE.md.
"""
from __future__ import annotations

import argparse
from typing import Callable

import numpy as np
import torch

from backend.models.tiny import build_bundle
from backend.pipeline import canvas
from backend.pipeline.layerfusion import LayerFusionPipeline
from bench.pipeline import PROMPTS, WIDE_UNET, timed
from bench.report import machine, table, write_section

STRENGTH = 0.5


def square(size: int, x: float, y: float, side: float) -> torch.Tensor:
    """An RGBA layer [4, H, W] with an opaque square at (x, y), in fractions of the side."""
    layer = torch.zeros(4, size, size)
    a, b, s = int(x * size), int(y * size), int(side * size)
    layer[:, b:b + s, a:a + s] = torch.tensor([0.8, 0.2, 0.2, 1.0])[:, None, None]
    return layer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    pipe = LayerFusionPipeline.from_bundle(build_bundle(seed=0, unet_overrides=WIDE_UNET))
    size, steps = args.size, args.steps
    rng = np.random.default_rng(0)
    background = torch.from_numpy(rng.random((3, size, size)).astype(np.float32))
    one, two = square(size, 0.1, 0.1, 0.4), square(size, 0.5, 0.5, 0.4)
    fg, bg, bl = PROMPTS

    def sampling() -> canvas.Sampling:
        return canvas.Sampling(num_inference_steps=steps, guidance_scale=7.0, generator=torch.Generator().manual_seed(0))

    rows_seen: dict[str, int] = {}

    def job(name: str, fn: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            out = fn()
            rows_seen[name] = getattr(out, "info", {}).get("unet_rows", 6)
        return run

    kinds = {
        "triplet": job("triplet", lambda: pipe(fg, bg, bl, height=size, width=size, num_inference_steps=steps,
                                                guidance_scale=7.0, generator=torch.Generator().manual_seed(0))),
        "add_foreground": job("add_foreground", lambda: canvas.add_foreground(
            pipe, background, fg, bg, bl, target=(size // 4, size // 4, size // 2, size // 2), sampling=sampling())),
        "add_background": job("add_background", lambda: canvas.add_background(pipe, one, fg, bg, bl, sampling=sampling())),
        "harmonize, one layer": job("harmonize, one layer", lambda: canvas.harmonize(
            pipe, [one], background, [fg], bg, bl, strength=STRENGTH, sampling=sampling())),
        "harmonize, two layers": job("harmonize, two layers", lambda: canvas.harmonize(
            pipe, [one, two], background, [fg, fg], bg, bl, strength=STRENGTH, sampling=sampling())),
    }
    for run in kinds.values():
        run()  # warm-up
    best = {name: float("inf") for name in kinds}
    for _ in range(args.rounds):
        for name, run in kinds.items():
            best[name] = min(best[name], timed(run))
    base = best["triplet"]
    unet_calls = {"triplet": "prior pass + steps", "add_foreground": "prior pass + steps", "add_background": "steps",
                  "harmonize, one layer": f"strength {STRENGTH} × steps", "harmonize, two layers": f"strength {STRENGTH} × steps"}
    rows = [(name, str(rows_seen[name]), unet_calls[name], f"{best[name]:.2f} s", f"**{best[name] / base:.2f}**")
            for name in kinds]
    body = (f"`python -m bench.canvas_jobs --size {size} --steps {steps} --rounds {args.rounds}` on {machine()}.\n"
            f"Bench model: the tiny SDXL-shaped architecture with its UNet widened (channels "
            f"{WIDE_UNET['block_out_channels']}), {size}×{size}, {steps} Euler steps, CFG 7, VAE and transparent "
            f"encoder/decoder included; best of {args.rounds} alternating rounds. No GPU was lent for this measurement.\n\n"
            + table(rows, ("kind", "rows per UNet call", "UNet calls", "time", "÷ triplet"))
            + "\n\nGiven branches run conditional only (nothing is sampled from them), so adding an object costs five "
              "rows a call where a triplet costs six; a harmonize runs strength × steps calls of n + 3 rows "
              "(n layers, the background, the blend's two guidance rows).")
    print(body)
    if not args.no_write:
        write_section("Jobs on the artist's layers", body)


if __name__ == "__main__":
    main()
