"""The cost of a LayerFusion triplet, side by side with one plain SDXL-pipeline image (issue 2).

Measured on the tiny SDXL-shaped architecture widened to ~30 M parameters at 512x512 on the CPU (where
batching rows is no longer free), plus parameter-memory arithmetic on the real SDXL shapes built on the
meta device. Run: ``python -m bench.pipeline [--steps 8] [--size 512]``; writes docs/PERFORMANCE.md.
"""
from __future__ import annotations

import argparse
import time

import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
from diffusers.models.attention_processor import AttnProcessor2_0

from backend.models.tiny import build_bundle
from backend.pipeline import canvas
from backend.pipeline.layerfusion import LayerFusionPipeline
from backend.pipeline.runs import LayerFusionOutput
from backend.pipeline.schedulers import nearest_step
from bench.report import machine, table, write_section
from shared.protocol import BlendMode, ContentPrior, Interaction, MethodOptions

WIDE_UNET = {"block_out_channels": (128, 256), "attention_head_dim": (2, 4)}
PROMPTS = ("a glass of water", "a wooden table at dusk", "a glass of water, a wooden table at dusk")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def reblend(pipe: LayerFusionPipeline, out, strength: float, **sampling) -> LayerFusionOutput:
    """A re-blend of a triplet's own layers, as the server runs one (``sampling``: canvas.Sampling's fields)."""
    return canvas.harmonize(pipe, [out.foreground], out.background, [PROMPTS[0]], *PROMPTS[1:],
                            strength=strength, sampling=canvas.Sampling(**sampling))


def params(*modules) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def sdxl_memory_ratio() -> dict[str, float]:
    """Resident parameters of SDXL LayerFusion ÷ a plain SDXL pipeline, from the real shapes (the
    configs the loader ships, built on the meta device)."""
    from backend.models.options import DEFAULT_RANK
    from backend.models.single_file import SDXL_CONFIG_DIR, meta_modules
    from backend.models.tiny import attention_projections
    from backend.models.transparent_vae import TransparentVAEDecoder, TransparentVAEEncoder

    parts = meta_modules(SDXL_CONFIG_DIR)
    unet = parts["unet"]
    with torch.device("meta"):
        decoder, encoder = TransparentVAEDecoder(), TransparentVAEEncoder()
    modules = dict(unet.named_modules())
    lora = sum(DEFAULT_RANK * sum(modules[n].weight.shape) for n in attention_projections(unet))
    plain = params(*parts.values())
    ours = plain + lora + params(decoder, encoder)
    return {"plain": plain, "lora": lora, "ratio": ours / plain,
            "two_unets": (plain + params(unet) + params(decoder, encoder)) / plain}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of all measurements; best counts")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    bundle = build_bundle(seed=0, unet_overrides=WIDE_UNET)
    pipe = LayerFusionPipeline.from_bundle(bundle)
    plain = StableDiffusionXLPipeline(vae=bundle.vae, text_encoder=bundle.text_encoder,
                                      text_encoder_2=bundle.text_encoder_2, tokenizer=bundle.tokenizer,
                                      tokenizer_2=bundle.tokenizer_2, unet=bundle.unet,
                                      scheduler=EulerDiscreteScheduler.from_config(bundle.scheduler_config))
    plain.set_progress_bar_config(disable=True)
    size, steps = args.size, args.steps
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731

    def one_image(n=steps):
        plain(PROMPTS[2], height=size, width=size, num_inference_steps=n, guidance_scale=7.0, generator=gen())

    def triplet(n=steps, **options):
        return pipe(*PROMPTS, height=size, width=size, num_inference_steps=n, guidance_scale=7.0, generator=gen(),
                    options=MethodOptions(**options), blend=BlendMode.alpha if "interaction" in options else BlendMode.generative)

    prior_block = lambda: triplet(content_prior=ContentPrior.prior_block)  # noqa: E731
    independent = lambda: triplet(interaction=Interaction.independent)  # noqa: E731

    latent = size // pipe.vae_scale_factor
    bundle.unet.set_attn_processor(AttnProcessor2_0())

    def bare_unet():
        """Exactly the UNet rows a triplet needs: the prior pass's 2-row calls, then 6-row calls."""
        scheduler = EulerDiscreteScheduler.from_config(bundle.scheduler_config)
        scheduler.set_timesteps(steps)
        prior_calls = nearest_step(scheduler.timesteps, 800) + 1
        for rows, calls in ((2, prior_calls), (6, steps)):
            sample = torch.randn(rows, 4, latent, latent)
            cond = dict(encoder_hidden_states=torch.randn(rows, 77, 64), added_cond_kwargs={
                "text_embeds": torch.randn(rows, 32), "time_ids": torch.tensor([[size, size, 0, 0, size, size]] * rows)})
            for t in scheduler.timesteps[:calls]:
                bundle.unet(sample, t, **cond)

    one_image(1), triplet(2)  # warm-up: first calls allocate
    # Rounds alternate the four measurements so that a busy moment hurts all alike; the best of each counts.
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        out = triplet()
        for name, fn in (("image", one_image), ("bare", bare_unet), ("triplet", triplet),
                         ("prior_block", prior_block), ("independent", independent),
                         ("reblend", lambda out=out: reblend(pipe, out, strength=0.5, num_inference_steps=steps,
                                                             generator=gen()))):
            best[name] = min(best.get(name, float("inf")), timed(fn))
    t_image, t_bare, t_triplet, t_reblend = (best[k] for k in ("image", "bare", "triplet", "reblend"))
    t_block, t_independent = best["prior_block"], best["independent"]
    plain_bytes = sum(p.numel() * p.element_size() for m in (bundle.unet, bundle.vae, bundle.text_encoder,
                                                               bundle.text_encoder_2) for p in m.parameters())
    sdxl = sdxl_memory_ratio()
    unet_m = params(bundle.unet) / 1e6
    rows = [
        ("triplet ÷ one plain SDXL-pipeline image", f"{t_triplet:.2f} s ÷ {t_image:.2f} s", f"**{t_triplet / t_image:.2f}**", "≤ 3.3"),
        ("floor: the triplet's bare UNet calls ÷ one image", f"{t_bare:.2f} s ÷ {t_image:.2f} s",
         f"{t_bare / t_image:.2f}", "—"),
        ("triplet (layer-wise content prior, the default) ÷ its bare batched UNet calls",
         f"{t_triplet:.2f} s ÷ {t_bare:.2f} s", f"**{t_triplet / t_bare:.2f}**", "≤ 1.10"),
        ("triplet (prior-block content prior) ÷ its bare batched UNet calls",
         f"{t_block:.2f} s ÷ {t_bare:.2f} s", f"{t_block / t_bare:.2f}", "≤ 1.10"),
        ("layer-wise ÷ prior-block triplet", f"{t_triplet:.2f} s ÷ {t_block:.2f} s", f"{t_triplet / t_block:.2f}", "—"),
        ("independent two-branch baseline ÷ fused triplet", f"{t_independent:.2f} s ÷ {t_triplet:.2f} s",
         f"{t_independent / t_triplet:.2f}", "—"),
        ("resident parameters ÷ one pipeline (bench model, rank-4 offsets)",
         f"{bundle.parameter_bytes / 1e6:.1f} MB ÷ {plain_bytes / 1e6:.1f} MB",
         f"**{bundle.parameter_bytes / plain_bytes:.2f}**", "≤ 1.2"),
        ("resident parameters ÷ one pipeline (real SDXL shapes, rank-256 offsets)",
         f"{sdxl['plain'] / 1e9:.3f} G + {sdxl['lora'] / 1e9:.3f} G offsets + decoder/encoder",
         f"**{sdxl['ratio']:.2f}** (a second UNet: {sdxl['two_unets']:.2f})", "≤ 1.2"),
        ("re-blend at strength 0.5 ÷ triplet", f"{t_reblend:.2f} s ÷ {t_triplet:.2f} s", f"**{t_reblend / t_triplet:.2f}**", "≤ 0.4"),
    ]
    body = (f"`python -m bench.pipeline --steps {steps} --size {size} --rounds {args.rounds}` on {machine()}.\n"
            f"Model: the tiny SDXL-shaped architecture with its UNet widened to {unet_m:.1f} M parameters "
            f"(channels {WIDE_UNET['block_out_channels']}, head dim 64), {size}×{size}, {steps} Euler steps, CFG 7, "
            f"restart prior pass, transparent decoder at tiny width, single pass. Best of {args.rounds} rounds "
            f"that alternate the measurements, after a warm-up. No GPU was lent for this measurement; real-SDXL timings are still to be taken.\n\n"
            + table(rows, ("measure", "figures", "ratio", "target"))
            + "\n\nThe floor row is the UNet work alone (six rows a step plus the prior pass's two-row steps): "
              "where it is above 3.3, the first target is out of reach here for any implementation of the "
              "three-branch method with its restart prior pass: a six-row UNet call on this CPU costs more "
              "than three two-row calls.")
    print(body)
    if not args.no_write:
        write_section("LayerFusion pipeline", body)


if __name__ == "__main__":
    main()
