"""SDXL's real shapes with random weights: what fast and standard jobs cost at 1024², through the
server's engine (issue 14's GPU figure: a fast 1024² re-blend, target under a second).

No weights can be downloaded on the machines we measure on, and timing and memory do not depend on the
weights' values, so the four SDXL modules are built from the configs the loader ships and randomly
initialised on the device, with LayerDiffuse's parts at their published sizes (rank-256 attention
offsets, the full-width transparent decoder and encoder). The fast preset is a distilled checkpoint
(``--fast-family lightning``): the same UNet rows as a distilled LoRA folded into the weights, which
is how the server runs one on a GPU. Each job is sent as the JSON the plugin sends and run by
``Engine.run``. Run on a machine with a GPU: ``python -m bench.sdxl_shapes``; writes
docs/PERFORMANCE.md. ``--shapes tiny`` runs the same jobs on the tiny model (the test does, on the CPU).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image

from backend.models.bundle import SDXL, ModelBundle
from backend.models.loading import resolve_device, resolve_dtype
from backend.models.lowrank import LowRankDelta
from backend.models.options import DEFAULT_RANK, LoadOptions
from backend.models.single_file import SDXL_CONFIG_DIR, config_modules, read_config
from backend.models.tiny import attention_projections, build_bundle, tiny_tokenizers
from backend.models.transparent_vae import TransparentVAEDecoder, TransparentVAEEncoder
from backend.pipeline.engine import Engine
from backend.pipeline.inputs import encode_png
from backend.server.store import ResultStore
from bench.report import machine, table, write_section
from shared.protocol import parse_job_request

FAST_FAMILY, FAST_STEPS, STANDARD_STEPS, STRENGTH = "lightning", 4, 25, 0.5
REBLEND_TARGET_S = 1.0
PROMPTS = {"foreground_prompt": "a glass of water", "background_prompt": "a wooden table at dusk"}


def random_sdxl(device: torch.device, dtype: torch.dtype, seed: int = 0) -> ModelBundle:
    """SDXL with LayerDiffuse at their real shapes, random weights, built on ``device``."""
    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in the dtype: no fp32 copy of 3.5 B parameters on the way
    try:
        modules = config_modules(SDXL_CONFIG_DIR, device)
        unet = modules["unet"]
        layers = dict(unet.named_modules())
        factors = {}
        with device:
            for name in attention_projections(unet):
                out_features, in_features = layers[name].weight.shape
                factors[name] = (torch.randn(out_features, DEFAULT_RANK) * 0.01,
                                 torch.randn(DEFAULT_RANK, in_features) * 0.01)
            decoder, encoder = TransparentVAEDecoder(), TransparentVAEEncoder()
    finally:
        torch.set_default_dtype(default)
    parts = {**modules, "transparent_decoder": decoder, "transparent_encoder": encoder}
    for module in parts.values():
        module.eval().requires_grad_(False)
    tokenizer, tokenizer_2 = tiny_tokenizers()  # the encoders' random weights make any token ids as good
    return ModelBundle(name="sdxl (real shapes, random weights)", architecture=SDXL, tokenizer=tokenizer,
                       tokenizer_2=tokenizer_2, scheduler_config=read_config(SDXL_CONFIG_DIR, "scheduler"),
                       transparent_attn=LowRankDelta(factors), device=device, dtype=dtype, **parts)


def tiny_on(device: torch.device, dtype: torch.dtype) -> ModelBundle:
    bundle = build_bundle(seed=0)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2", "transparent_decoder", "transparent_encoder"):
        setattr(bundle, name, getattr(bundle, name).to(device, dtype))
    bundle.transparent_attn = bundle.transparent_attn.to(device, dtype)
    bundle.device, bundle.dtype = device, dtype
    return bundle


class Measured:
    """Median seconds and peak device memory of a job over rounds, after one warm-up run. A round is
    what the server does for a job: read the request's PNGs, run it, write the result PNGs."""

    def __init__(self, engine: Engine, device: torch.device, store: ResultStore):
        self.engine, self.device, self.store = engine, device, store

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def job(self, body: dict[str, Any], rounds: int) -> tuple[float, int, Any]:
        request = parse_job_request(body)
        result = self.engine.run(request)  # warm-up: kernels chosen, buffers allocated
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        times = []
        for _ in range(rounds):
            self._sync()
            start = time.perf_counter()
            result = self.engine.run(request)
            self.store.write_images(uuid.uuid4().hex, result.images)
            self._sync()
            times.append(time.perf_counter() - start)
        peak = torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda" else 0
        return statistics.median(times), peak, result


def jobs(size: int, region: int) -> dict[str, Callable[[dict[str, Image.Image]], dict[str, Any]]]:
    """The measured jobs as request bodies; the re-blends take the fast triplet's layers as the canvas."""
    common = {**PROMPTS, "seed": 1}
    half = (size - region) // 2

    def reblend(images: dict[str, Image.Image], **extra: Any) -> dict[str, Any]:
        return {**common, "kind": "reblend", "speed": "fast", "steps": FAST_STEPS, "strength": STRENGTH,
                "foreground_png": encode_png(images["foreground"]), "background_png": encode_png(images["background"]), **extra}

    return {
        "fast": lambda _: {**common, "kind": "generate", "width": size, "height": size, "speed": "fast",
                           "steps": FAST_STEPS},
        "standard": lambda _: {**common, "kind": "generate", "width": size, "height": size,
                               "steps": STANDARD_STEPS, "guidance": 7.0},
        "reblend": lambda images: reblend(images),
        "local": lambda images: reblend(images, previous_blend_png=encode_png(images["blend"]),
                                        changed={"x": half, "y": half, "width": region, "height": region}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shapes", choices=("sdxl", "tiny"), default="sdxl")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--region", type=int, default=256, help="side of the moved region of the local re-blend")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of each job after a warm-up; the median counts")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    device = resolve_device(args.device)
    dtype = resolve_dtype(device, args.dtype)
    built = time.perf_counter()
    bundle = random_sdxl(device, dtype) if args.shapes == "sdxl" else tiny_on(device, dtype)
    built = time.perf_counter() - built
    engine = Engine(LoadOptions(model=args.shapes, device=str(device), fast_family=FAST_FAMILY))
    engine.attach(bundle)
    bodies = jobs(args.size, args.region)
    seconds: dict[str, float] = {}
    peaks: dict[str, int] = {}
    images: dict[str, Image.Image] = {}
    with tempfile.TemporaryDirectory(prefix="bench-sdxl-") as results:
        measured = Measured(engine, device, ResultStore(Path(results)))
        for name, body in bodies.items():
            seconds[name], peaks[name], result = measured.job(body(images), args.rounds)
            if name == "fast":
                images = result.images
            if name == "local":
                box = result.params["local_region"]
    size, gib = args.size, 2 ** 30
    memory = (lambda name: f"{peaks[name] / gib:.1f} GiB") if device.type == "cuda" else (lambda name: "—")
    rows = [
        (f"fast triplet {size}² ({FAST_STEPS} steps, guidance 1)", f"{seconds['fast']:.2f} s", memory("fast"), "—"),
        (f"standard triplet {size}² ({STANDARD_STEPS} steps, CFG 7)", f"{seconds['standard']:.2f} s",
         memory("standard"), "—"),
        ("fast triplet ÷ standard triplet", f"**{seconds['fast'] / seconds['standard']:.3f}**", "", "≤ 0.10"),
        (f"fast re-blend of the whole {size}² canvas (strength {STRENGTH:g})", f"**{seconds['reblend']:.2f} s**",
         memory("reblend"), f"< {REBLEND_TARGET_S:g} s"),
        (f"fast local re-blend, a {args.region}² move on {size}² (crop {box[2]}×{box[3]})",
         f"**{seconds['local']:.2f} s**", memory("local"), "—"),
    ]
    body = (f"`python -m bench.sdxl_shapes --shapes {args.shapes} --size {size} --region {args.region} --rounds "
            f"{args.rounds}` on {machine()}, {engine.device_description}.\n"
            + ("SDXL's real shapes (UNet, VAE, both text encoders from the shipped configs; LayerDiffuse's rank-256 "
               "attention offsets and full-width transparent decoder and encoder), random weights"
               if args.shapes == "sdxl" else "The tiny model")
            + f" built on the device in {built:.0f} s. Jobs as the plugin sends them, run by the server's engine; "
            f"median of {args.rounds} runs after a warm-up, each reading the request's PNGs and writing the results' as "
            "the server does; peak memory is the "
            "device's allocated maximum during the timed runs. Fast: a distilled checkpoint with the "
            f"{FAST_FAMILY} preset (the UNet rows of a folded distilled LoRA).\n\n"
            + table(rows, ("job", "seconds", "peak memory", "target")))
    print(body)
    if not args.no_write:
        write_section(f"SDXL shapes on {'a GPU' if device.type == 'cuda' else 'the CPU'}", body)


if __name__ == "__main__":
    main()
