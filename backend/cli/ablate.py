"""``python -m backend ablate``: the method's ablations (the supplement's Fig. 3) on one labelled sheet,
``ablation.png``, with every tile as ``tiles/<row>-<label>.png`` and their requests in ``ablation.json``."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from PIL import Image, ImageDraw, ImageFont

from backend.cli.generate import _parse_size, fail
from backend.cli.model_options import add_model_arguments, load_options
from shared.fields import ProtocolError, to_json
from shared.protocol import GenerateRequest, JobRequest, parse_job_request, request_params

if TYPE_CHECKING:
    from backend.pipeline.engine import Engine, JobResult

# Contrasting backgrounds for row (a); the two first that differ from the user's --bg are used.
CONTRASTS = {"neon": "a neon-lit street at night", "snow": "a snowy forest", "beach": "a sunny beach"}
MASK_SOURCES = ("self", "cross", "product")
COEFFICIENTS: tuple[float | str, ...] = (1, 5, 10, 20, "inf")
TITLES = {"a": "(a) background influence", "b": "(b) alpha vs generative", "c": "(c) mask source",
          "d": "(d) boundary coefficient k", "e": "(e) re-blend after a move"}
REBLEND_STRENGTH = 0.5
PAD = 6  # between tiles, rows and the sheet's edge
CAPTION_GAP = 2  # between a tile and its caption

Size = tuple[int, int]
Point = tuple[int, int]


@dataclass
class Tile:
    row: str
    label: str
    image: Image.Image
    shows: str  # what the image is, in words
    params: dict[str, Any]  # the request's JSON form, as sent to Engine.run (uploads left out)
    inputs: dict[str, str] = field(default_factory=dict)  # uploads of a re-blend, described

    @property
    def name(self) -> str:
        return f"{self.row}-{self.label}"


@dataclass(frozen=True)
class Layout:
    size: Size
    titles: list[Point]  # each row title's top-left
    tiles: list[list[Point]]  # each tile's top-left, row by row
    captions: list[list[Point]]  # each caption's top-left, row by row


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("ablate", help="one contact sheet of the method's ablations (supplement Fig. 3)")
    parser.add_argument("--fg", required=True, help="foreground prompt")
    parser.add_argument("--bg", required=True, help="background prompt")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--size", default=None, help="WxH, multiples of 8 (default: the model's own size)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--seed", type=int, default=None, help="default: random (written to ablation.json)")
    add_model_arguments(parser, default_model="tiny")
    parser.set_defaults(func=run_ablate)


@lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()


def text_width(text: str) -> int:
    return int(_font().getbbox(text)[2])


def line_height() -> int:
    return int(_font().getbbox("Ag")[3])


def layout(rows: Sequence[Sequence[Size]], captions: Sequence[Sequence[str]], titles: Sequence[str]) -> Layout:
    """Row titles in a left column, tiles left to right at their own size, a caption centred under each."""
    left = PAD + max(text_width(t) for t in titles) + PAD
    width, y = left, PAD
    title_at: list[Point] = []
    tile_at: list[list[Point]] = []
    caption_at: list[list[Point]] = []
    for sizes, labels in zip(rows, captions):
        tallest = max(h for _, h in sizes)
        x, tiles, caps = left, [], []
        for (w, _), label in zip(sizes, labels):
            cell = max(w, text_width(label))
            tiles.append((x + (cell - w) // 2, y))
            caps.append((x + (cell - text_width(label)) // 2, y + tallest + CAPTION_GAP))
            x += cell + PAD
        height = tallest + CAPTION_GAP + line_height()
        title_at.append((PAD, y + (height - line_height()) // 2))
        tile_at.append(tiles)
        caption_at.append(caps)
        width, y = max(width, x), y + height + PAD
    return Layout((width, y), title_at, tile_at, caption_at)


def render(rows: Sequence[Sequence[Tile]]) -> Image.Image:
    titles = [TITLES[row[0].row] for row in rows]
    plan = layout([[t.image.size for t in row] for row in rows], [[t.label for t in row] for row in rows], titles)
    sheet = Image.new("RGB", plan.size, "white")
    draw = ImageDraw.Draw(sheet)
    for row, title, title_at, tiles_at, captions_at in zip(rows, titles, plan.titles, plan.tiles, plan.captions):
        draw.text(title_at, title, fill="black", font=_font())
        for tile, at, caption_at in zip(row, tiles_at, captions_at):
            sheet.paste(tile.image.convert("RGB"), at)
            draw.text(caption_at, tile.label, fill="black", font=_font())
    return sheet


def over_checker(image: Image.Image) -> Image.Image:
    """An RGBA image over a grey checkerboard, so its transparency shows."""
    board = Image.new("RGBA", image.size, (255, 255, 255, 255))
    draw = ImageDraw.Draw(board)
    square = max(4, min(image.size) // 16)
    for y in range(0, image.height, square):
        for x in range((y // square) % 2 * square, image.width, 2 * square):
            draw.rectangle((x, y, x + square - 1, y + square - 1), fill=(204, 204, 204, 255))
    return Image.alpha_composite(board, image.convert("RGBA")).convert("RGB")


def stacked(top: Image.Image, bottom: Image.Image) -> Image.Image:
    canvas = Image.new("RGB", (max(top.width, bottom.width), top.height + bottom.height), "white")
    canvas.paste(top.convert("RGB"), (0, 0))
    canvas.paste(bottom.convert("RGB"), (0, top.height))
    return canvas


def backgrounds(bg: str) -> dict[str, str]:
    others = [(label, prompt) for label, prompt in CONTRASTS.items() if prompt != bg.strip()]
    return {"given": bg, **dict(others[:2])}


def generate_jobs(args: argparse.Namespace, size: Size, seed: int) -> dict[str, dict[str, Any]]:
    """Rows (a) to (d) as JSON requests, by job name; row (e) needs row (b)'s result first."""
    base = {"kind": "generate", "foreground_prompt": args.fg, "background_prompt": args.bg, "width": size[0],
            "height": size[1], "steps": args.steps, "seed": seed, "blend": "generative", "options": {}}
    jobs = {f"a-{label}": {**base, "background_prompt": bg} for label, bg in backgrounds(args.bg).items()}
    jobs["b-alpha"] = {**base, "blend": "alpha"}
    jobs["b-generative"] = base
    jobs.update({f"c-{s}": {**base, "options": {"mask_source": s}} for s in MASK_SOURCES})
    jobs.update({f"d-k{k}": {**base, "options": {"boundary_coefficient": k}} for k in COEFFICIENTS})
    return jobs


def reblend_job(source: GenerateRequest, result: JobResult) -> dict[str, Any]:
    """The row-(b) generative foreground moved right by a quarter of the width, re-blended."""
    from backend.pipeline.inputs import encode_png  # torch: imported once a job has run

    foreground = result.images["foreground"]
    moved = Image.new("RGBA", foreground.size, (0, 0, 0, 0))
    moved.paste(foreground, (foreground.width // 4, 0))
    return {"kind": "reblend", "foreground_prompt": source.foreground_prompt,
            "background_prompt": source.background_prompt, "steps": source.steps, "seed": source.seed,
            "strength": REBLEND_STRENGTH, "foreground_png": encode_png(moved),
            "background_png": encode_png(result.images["background"])}


class Runner:
    """Runs each distinct request once on the one engine, a tick of the bar per run."""

    def __init__(self, engine: Engine, bar: Any) -> None:
        self.engine, self.bar = engine, bar
        self.done: dict[str, JobResult] = {}

    def __call__(self, name: str, request: JobRequest) -> JobResult:
        key = json.dumps(to_json(request), sort_keys=True)
        if key not in self.done:
            self.bar.set_postfix_str(name)
            self.done[key] = self.engine.run(request)
            self.bar.update(1)
        return self.done[key]


def build_tiles(requests: dict[str, JobRequest], results: dict[str, JobResult]) -> list[Tile]:
    def tile(row: str, label: str, job: str, shows: str, image: Image.Image | None = None, **inputs: str) -> Tile:
        picked = image if image is not None else results[job].images[shows]
        return Tile(row, label, picked, shows, request_params(requests[job]), inputs)

    images = {job: result.images for job, result in results.items()}
    tiles = [tile("a", job[2:], job, "foreground over a checkerboard", over_checker(images[job]["foreground"]))
             for job in requests if job.startswith("a-")]
    tiles += [tile("b", "foreground", "b-generative", "foreground over a checkerboard",
                   over_checker(images["b-generative"]["foreground"])),
              tile("b", "background", "b-generative", "background"),
              tile("b", "alpha", "b-alpha", "blend"), tile("b", "generative", "b-generative", "blend")]
    for s in MASK_SOURCES:
        tiles += [tile("c", f"{s}-blend", f"c-{s}", "blend"), tile("c", f"{s}-soft", f"c-{s}", "mask_soft"),
                  tile("c", f"{s}-hard", f"c-{s}", "mask_hard")]
    tiles += [tile("d", f"k{k}", f"d-k{k}", "blend above mask_hard",
                   stacked(images[f"d-k{k}"]["blend"], images[f"d-k{k}"]["mask_hard"])) for k in COEFFICIENTS]
    return tiles + [tile("e", "before", "b-generative", "blend"), tile(
        "e", "after", "e-reblend", "blend", background_png="the row-(b) generative background",
        foreground_png="the row-(b) generative foreground, shifted right by a quarter of the width")]


def write(out: Path, tiles: list[Tile], summary: dict[str, Any]) -> Image.Image:
    (out / "tiles").mkdir(parents=True, exist_ok=True)
    for tile in tiles:
        tile.image.save(out / "tiles" / f"{tile.name}.png")
    rows = [[t for t in tiles if t.row == row] for row in TITLES]
    sheet = render([row for row in rows if row])
    sheet.save(out / "ablation.png")
    entries = [{"row": t.row, "label": t.label, "file": f"tiles/{t.name}.png", "shows": t.shows,
                "params": t.params, **({"inputs": t.inputs} if t.inputs else {})} for t in tiles]
    record = {**summary, "sheet": {"file": "ablation.png", "width": sheet.width, "height": sheet.height},
              "rows": [{"row": row, "title": title} for row, title in TITLES.items()], "tiles": entries}
    (out / "ablation.json").write_text(json.dumps(record, indent=2) + "\n")
    return sheet


def run_ablate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from backend.models.catalog import ModelNotAvailable
    from backend.pipeline.engine import Engine, resolve_seed

    engine = Engine(load_options(args))
    try:
        size = _parse_size(args.size) if args.size else engine.architecture.default_size
        seed = args.seed if args.seed is not None else resolve_seed(None)
        requests = {name: parse_job_request(data) for name, data in generate_jobs(args, size, seed).items()}
        for request in requests.values():
            engine.check(request)  # before loading anything
    except ProtocolError as err:
        return fail(err)
    runs = len({json.dumps(to_json(r), sort_keys=True) for r in requests.values()}) + 1  # + the re-blend
    try:
        print(f"loading model '{args.model}'…", file=sys.stderr)
        engine.load()
        with tqdm(total=runs, desc="ablate", unit="run", file=sys.stderr) as bar:
            run = Runner(engine, bar)
            results = {name: run(name, request) for name, request in requests.items()}
            source = requests["b-generative"]
            assert isinstance(source, GenerateRequest)
            requests["e-reblend"] = parse_job_request(reblend_job(source, results["b-generative"]))
            results["e-reblend"] = run("e-reblend", requests["e-reblend"])
    except ProtocolError as err:
        return fail(err)
    except ModelNotAvailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    tiles = build_tiles(requests, results)
    last = results["e-reblend"].params
    summary = {"foreground_prompt": args.fg, "background_prompt": args.bg, "seed": seed, "width": size[0],
               "height": size[1], "steps": args.steps, "model": last["model"], "device": last["device"],
               "engine_runs": runs}
    sheet = write(args.out, tiles, summary)
    print(f"wrote ablation.png ({sheet.width}x{sheet.height}, {len(tiles)} tiles from {runs} runs), "
          f"ablation.json and tiles/ to {args.out} (seed {seed})")
    return 0
