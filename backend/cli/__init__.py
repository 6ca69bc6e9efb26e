"""``python -m backend``: serve, generate, reblend and models, one module per command."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

# Each command module exposes ``register(subparsers)``; the parser it adds sets ``func``.
COMMANDS = ("backend.cli.serve", "backend.cli.generate", "backend.cli.models")


def build_parser() -> argparse.ArgumentParser:
    from backend import __version__

    parser = argparse.ArgumentParser(prog="python -m backend", description="LayerFusion backend")
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
            continue  # command not built yet
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return int(args.func(args) or 0)
