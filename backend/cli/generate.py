"""``python -m backend generate`` and ``reblend``: the pipeline without Krita, files in a folder.

The options every job command shares and the run that writes PNGs, params.json and layers.ora are here;
the commands on the artist's own layers are in ``canvas.py``.
"""
from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from backend.cli.model_options import add_model_arguments, load_options
from shared.fields import ProtocolError
from shared.protocol import (
    AttentionBlend,
    BlendMode,
    ContentPrior,
    Interaction,
    MaskSource,
    PriorMode,
    Sampler,
    Speed,
    parse_job_request,
)


def register(sub: argparse._SubParsersAction) -> None:
    gen = sub.add_parser("generate", help="foreground RGBA + background + blend from two prompts")
    gen.add_argument("--fg", required=True, help="foreground prompt")
    gen.add_argument("--bg", required=True, help="background prompt")
    gen.add_argument("--blend", default="generative", choices=[m.value for m in BlendMode])
    gen.add_argument("--size", default=None, help="WxH, multiples of 8 (default: the model's own size)")
    add_job_arguments(gen)
    gen.set_defaults(func=run_generate)

    re = sub.add_parser("reblend", help="a new blend for a moved foreground over a background")
    re.add_argument("--foreground", required=True, type=Path, help="RGBA PNG as it now lies on the canvas")
    re.add_argument("--background", required=True, type=Path, help="RGB PNG of the same size")
    re.add_argument("--fg", required=True, help="foreground prompt")
    re.add_argument("--bg", required=True, help="background prompt")
    re.add_argument("--strength", type=float, default=0.5, help="share of the steps re-run, in (0, 1]")
    add_job_arguments(re)
    re.set_defaults(func=run_reblend)


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--blend-prompt", default="", help="default: '<fg>, <bg>'")
    parser.add_argument("--blend-layers", action="store_true",
                        help="also split the blend into Shadows (multiply) and Light (screen) layers")
    parser.add_argument("--negative", default="", help="negative prompt")
    parser.add_argument("--steps", type=int, default=None,
                        help="denoising steps (default 25; with --fast the steps the preset was distilled for)")
    parser.add_argument("--fast", action="store_true",
                        help="speed 'fast': the step-distilled preset of --fast-lora / --fast-family")
    parser.add_argument("--guidance", type=float, default=7.0)
    parser.add_argument("--seed", type=int, default=None, help="default: random (written to params.json)")
    parser.add_argument("--lora", action="append", default=[], metavar="NAME[:STRENGTH]",
                        help="a LoRA from the LoRA folders (see `models list`), strength -4..4, default 1; "
                             "repeat for several")
    add_model_arguments(parser, default_model="tiny")
    method = parser.add_argument_group("method options")
    method.add_argument("--mask-source", choices=[m.value for m in MaskSource])
    method.add_argument("--threshold", type=float, help="mask threshold tau in [0, 1] (default 0.5)")
    method.add_argument("--boundary-coefficient", type=_coefficient, metavar="K",
                        help="soft decision boundary k > 0, higher = sharper; 'inf' = a step (default 16)")
    method.add_argument("--content-prior", choices=[m.value for m in ContentPrior],
                        help="layerwise (the paper's c_l, default) or prior_block")
    method.add_argument("--interaction", choices=[m.value for m in Interaction],
                        help="fused (the method, default) or independent (two plain branches, a baseline)")
    method.add_argument("--prior-mode", choices=[m.value for m in PriorMode])
    method.add_argument("--prior-layer", help="transformer block giving the priors")
    method.add_argument("--attention-blend", choices=[m.value for m in AttentionBlend])
    method.add_argument("--sampler", choices=[m.value for m in Sampler])
    method.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="8-way median in the transparent decoder (default: on GPU only)")


def _coefficient(text: str) -> Any:
    # Kept as the wire form ("inf" or a number) so the protocol's own check names a bad value.
    return "inf" if text.strip().lower() in ("inf", "infinity") else float(text)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    names = {"mask_source": "mask_source", "threshold": "threshold",
             "boundary_coefficient": "boundary_coefficient", "content_prior": "content_prior",
             "interaction": "interaction",
             "prior_mode": "prior_mode", "prior_layer": "prior_layer", "attention_blend": "attention_blend",
             "sampler": "sampler", "tta": "transparent_tta"}
    return {key: getattr(args, arg) for arg, key in names.items() if getattr(args, arg) is not None}


def parse_lora(text: str) -> dict[str, Any]:
    """``NAME[:STRENGTH]`` as the protocol's LoRA choice; the protocol checks the strength's range."""
    name, sep, tail = text.rpartition(":")
    if not sep:
        return {"name": text, "strength": 1.0}
    try:
        return {"name": name, "strength": float(tail)}
    except ValueError:
        raise ProtocolError("invalid_field", f"--lora {text!r}: the strength after ':' must be a number",
                            "loras") from None


def job_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The request fields every job command takes, as wire JSON for the protocol to check."""
    data = {"blend_prompt": args.blend_prompt, "blend_layers": args.blend_layers,
            "negative_prompt": args.negative, "guidance": args.guidance,
            "options": _options(args), "loras": [parse_lora(text) for text in args.lora],
            "speed": "fast" if args.fast else "quality"}
    if args.steps is not None:
        data["steps"] = args.steps
    if args.seed is not None:
        data["seed"] = args.seed
    return data


def read_png(path: Path, field: str) -> str:
    try:
        return base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError as err:
        raise ProtocolError("invalid_file", f"cannot read {path}: {err.strerror}", field) from None


def run_generate(args: argparse.Namespace) -> int:
    from backend.models.bundle import SDXL, TINY

    try:
        if args.size:
            width, height = _parse_size(args.size)
        else:
            width, height = (TINY if args.model == "tiny" else SDXL).default_size
        request = parse_job_request({**job_fields(args), "kind": "generate", "blend": args.blend,
                                     "foreground_prompt": args.fg, "background_prompt": args.bg,
                                     "width": width, "height": height})
    except ProtocolError as err:
        return fail(err)
    return run_job(args, request)


def run_reblend(args: argparse.Namespace) -> int:
    try:
        request = parse_job_request({**job_fields(args), "kind": "reblend", "strength": args.strength,
                                     "foreground_prompt": args.fg, "background_prompt": args.bg,
                                     "foreground_png": read_png(args.foreground, "foreground_png"),
                                     "background_png": read_png(args.background, "background_png")})
    except ProtocolError as err:
        return fail(err)
    return run_job(args, request)


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ProtocolError("invalid_field", f"size must look like 1024x1024; got {text!r}", "size") from None
    return width, height


def run_job(args: argparse.Namespace, request) -> int:
    from tqdm import tqdm

    from backend.export.layer_stack import light_job_stack
    from backend.export.openraster import write_openraster
    from backend.models.catalog import ModelNotAvailable
    from backend.models.distilled import DistilledError
    from backend.pipeline.engine import Engine
    from backend.pipeline.faults import is_out_of_memory, out_of_memory_message

    try:
        engine = Engine(load_options(args))
    except DistilledError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if engine.fast is not None and request.speed is Speed.fast and args.steps is None:
        request = dataclasses.replace(request, steps=engine.fast.default_steps)
    bar = tqdm(desc=request.kind.value, unit="step", file=sys.stderr, delay=0.1)

    def on_step(update) -> None:
        bar.total = update.total
        bar.update(update.step - bar.n)

    try:
        engine.check(request)  # before loading anything: size limits are known per architecture
        print(f"loading model '{args.model}'…", file=sys.stderr)
        engine.load()
        result = engine.run(request, on_step=on_step)  # checks again against the loaded model
    except ProtocolError as err:
        return fail(err)
    except ModelNotAvailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except Exception as err:
        if not is_out_of_memory(err):
            raise
        width, height = request.size
        print(f"error: {out_of_memory_message(engine.device_description, width, height)}", file=sys.stderr)
        return 1
    finally:
        bar.close()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, image in result.images.items():
        image.save(args.out / f"{name}.png")
    (args.out / "params.json").write_text(json.dumps(result.params, indent=2) + "\n")
    stack, merged = light_job_stack(request, result.images)
    if len(stack) > 1:
        write_openraster(args.out / "layers.ora", stack, merged=merged)
    print(f"wrote {', '.join(sorted(p.name for p in args.out.iterdir()))} to {args.out} "
          f"(seed {result.params['seed']}, {result.params['seconds']} s on {result.params['device']})")
    return 0


def fail(err: ProtocolError) -> int:
    where = f" ({err.field})" if err.field else ""
    print(f"error{where}: {err.message}", file=sys.stderr)
    return 2
