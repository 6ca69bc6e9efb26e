"""``python -m backend models list|check|download``: what model files there are, and getting them."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list, check and download model files")
    sub = parser.add_subparsers(dest="models_command", required=True, metavar="ACTION")

    listing = sub.add_parser("list", help="presets and the model files found (HF cache, --models-dir)")
    listing.add_argument("--models-dir", help="a ComfyUI-style models folder (checkpoints/, layer_model/, vae/, loras/)")
    listing.add_argument("--lora-dir", action="append", default=[], metavar="DIR", help="another LoRA folder")
    listing.set_defaults(func=run_list)

    check = sub.add_parser("check", help="validate a weight file: its format, names and shapes")
    check.add_argument("path")
    check.add_argument("--model", choices=("auto", "sdxl", "tiny"), default="auto",
                       help="which model's modules the file must fit (auto: SDXL, then tiny)")
    check.set_defaults(func=run_check)

    download = sub.add_parser("download", help="fetch model files into the Hugging Face cache (resumable)")
    download.add_argument("target", choices=("sdxl", "layerdiffuse", "sdxl-tokenizers"))
    download.add_argument("--no-verify", action="store_true", help="skip the SHA-256 checks")
    download.set_defaults(func=run_download)


def run_list(args: argparse.Namespace) -> int:
    from backend.models import catalog
    from backend.models.tiny_files import TINY_FILES_VERSION, cache_root

    models_dir = Path(args.models_dir).expanduser() if args.models_dir else None
    if models_dir and not models_dir.is_dir():
        print(f"--models-dir {models_dir}: no such folder", file=sys.stderr)
        return 2
    print("Presets:")
    tiny_root = cache_root() / f"tiny-v{TINY_FILES_VERSION}"
    ready = {
        "tiny": f"written at {tiny_root}" if (tiny_root / "VERSION").is_file() else "written on first use",
        "sdxl": _sdxl_state(models_dir),
    }
    for name, text in catalog.PRESETS.items():
        print(f"  {name:6} {text}\n         -> {ready[name]}")
    print("Files:")
    found = list(catalog.scan(models_dir))
    for item in found:
        print(f"  {catalog.human_size(item.size):>9}  {item.format:26} {item.where:40} {item.path}")
    if not found:
        where = f"{models_dir} and the Hugging Face cache" if models_dir else "the Hugging Face cache (no --models-dir)"
        print(f"  none in {where}")
    _list_loras(models_dir, args.lora_dir)
    return 0


def _list_loras(models_dir: Path | None, lora_dirs: list[str]) -> None:
    from backend.models import catalog
    from backend.models.loras import LoraLibrary

    library = LoraLibrary.from_options(models_dir, lora_dirs)
    print("LoRAs (give NAME to --lora NAME[:STRENGTH]):")
    files = library.list()
    for file in files:
        note = file.problem or ("" if file.base == "sdxl" else f"not SDXL: {file.base}")
        print(f"  {catalog.human_size(file.size):>9}  {file.format:9} {file.base:7} {file.name}"
              + (f"  ({note})" if note else ""))
    if not files:
        where = ", ".join(str(f) for f in library.folders) or "no LoRA folder (--models-dir DIR/loras, --lora-dir)"
        print(f"  none in {where}")


def _sdxl_state(models_dir: Path | None) -> str:
    from backend.models import catalog

    parts = []
    base = catalog.sdxl_base_checkpoint(models_dir)
    if base:
        parts.append(f"base: {base}")
    elif catalog.sdxl_in_cache():
        parts.append(f"base: {catalog.SDXL_REPO} in the HF cache")
    else:
        parts.append("base: missing")
    files = catalog.layerdiffuse_files(models_dir)
    parts.append(f"LayerDiffuse: {files.attn.parent}" if files else "LayerDiffuse: missing")
    if "missing" in " ".join(parts):
        parts.append("run `layerfusion models download sdxl` or pass --models-dir")
    return "; ".join(parts)


def run_check(args: argparse.Namespace) -> int:
    from backend.models.validate import check_file
    from backend.models.weight_files import WeightFileError

    try:
        result = check_file(args.path, args.model)
    except WeightFileError as err:
        print(f"INVALID: {err}", file=sys.stderr)
        return 1
    print(f"{result.path}\n  format: {result.format} ({result.description})\n"
          f"  tensors: {result.tensors}, parameters: {result.parameters:,}\n"
          f"  fits: {result.model}: {result.note}\nOK")
    return 0


def run_download(args: argparse.Namespace) -> int:
    from backend.models.catalog import ModelNotAvailable
    from backend.models.download import ChecksumError, download

    try:
        paths = download(args.target, verify_checksums=not args.no_verify)
    except (ModelNotAvailable, ChecksumError) as err:
        print(f"download failed: {err}", file=sys.stderr)
        return 1
    print(f"{len(paths)} files in the Hugging Face cache")
    return 0
