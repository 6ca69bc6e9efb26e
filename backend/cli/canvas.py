"""``add-foreground``, ``add-background`` and ``harmonize``: jobs on the artist's own layers, from PNG files."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from backend.cli.generate import add_job_arguments, fail, job_fields, read_png, run_job
from shared.fields import ProtocolError
from shared.protocol import MAX_FOREGROUNDS, parse_job_request


def register(sub: argparse._SubParsersAction) -> None:
    obj = sub.add_parser("add-foreground", help="a transparent object generated into a picture, and its blend")
    obj.add_argument("--background", required=True, type=Path, help="the picture, RGB PNG")
    obj.add_argument("--fg", required=True, help="what the object is")
    obj.add_argument("--bg", default="", help="what the picture shows (optional)")
    obj.add_argument("--target", metavar="X,Y,W,H", help="where the object goes, in pixels (default: anywhere)")
    add_job_arguments(obj)
    obj.set_defaults(func=run_add_foreground)

    back = sub.add_parser("add-background", help="a background generated behind an RGBA layer, and the blend")
    back.add_argument("--foreground", required=True, type=Path, help="the layer, RGBA PNG with transparency")
    back.add_argument("--bg", required=True, help="the scene to put behind it")
    back.add_argument("--fg", default="", help="what the layer shows (optional)")
    add_job_arguments(back)
    back.set_defaults(func=run_add_background)

    har = sub.add_parser("harmonize", help="a blend of RGBA layers over a background")
    har.add_argument("--background", required=True, type=Path, help="RGB PNG")
    har.add_argument("--layer", action="append", required=True, metavar="PNG[:PROMPT]",
                     help=f"an RGBA layer the background's size, bottom first; repeat, at most {MAX_FOREGROUNDS}")
    har.add_argument("--bg", default="", help="what the background shows (optional)")
    har.add_argument("--strength", type=float, default=0.5, help="share of the steps run, in (0, 1]")
    add_job_arguments(har)
    har.set_defaults(func=run_harmonize)


def parse_target(text: str) -> dict[str, int]:
    try:
        x, y, width, height = (int(part) for part in text.split(","))
    except ValueError:
        raise ProtocolError("invalid_field", f"--target must look like 10,20,300,200; got {text!r}",
                            "target") from None
    return {"x": x, "y": y, "width": width, "height": height}


def _submit(args: argparse.Namespace, fields: dict[str, Any]) -> int:
    try:
        request = parse_job_request({**job_fields(args), **fields})
    except ProtocolError as err:
        return fail(err)
    return run_job(args, request)


def run_add_foreground(args: argparse.Namespace) -> int:
    try:
        fields = {"kind": "add_foreground", "foreground_prompt": args.fg, "background_prompt": args.bg,
                  "background_png": read_png(args.background, "background_png")}
        if args.target:
            fields["target"] = parse_target(args.target)
    except ProtocolError as err:
        return fail(err)
    return _submit(args, fields)


def run_add_background(args: argparse.Namespace) -> int:
    try:
        fields = {"kind": "add_background", "foreground_prompt": args.fg, "background_prompt": args.bg,
                  "foreground_png": read_png(args.foreground, "foreground_png")}
    except ProtocolError as err:
        return fail(err)
    return _submit(args, fields)


def run_harmonize(args: argparse.Namespace) -> int:
    try:
        layers = []
        for i, text in enumerate(args.layer):
            # A prompt may hold colons; a Windows drive letter never follows a PNG path.
            path, sep, prompt = text.partition(".png:")
            path = path + ".png" if sep else text
            layers.append({"png": read_png(Path(path), f"foregrounds[{i}].png"), "prompt": prompt})
        fields = {"kind": "harmonize", "background_prompt": args.bg, "strength": args.strength,
                  "foregrounds": layers, "background_png": read_png(args.background, "background_png")}
    except ProtocolError as err:
        return fail(err)
    return _submit(args, fields)
