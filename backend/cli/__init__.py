"""``layerfusion`` (or ``python -m backend``): serve, generate, reblend, the jobs on given layers and models."""
from __future__ import annotations

import argparse
import importlib
from typing import Sequence

from backend.cli import quiet

# Each command module exposes ``register(subparsers)``; the parser it adds sets ``func``.
COMMANDS = ("backend.cli.serve", "backend.cli.generate", "backend.cli.canvas", "backend.cli.models",
            "backend.cli.ablate")


def build_parser(prog: str = "layerfusion") -> argparse.ArgumentParser:
    from backend import __version__

    parser = argparse.ArgumentParser(prog=prog, description="LayerFusion backend")
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, and the libraries' warnings (hidden by default)")
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


def main(argv: Sequence[str] | None = None, prog: str = "layerfusion") -> int:
    """The ``layerfusion`` console command (pyproject.toml) and ``python -m backend``."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    quiet.configure(args.verbose, args.command)
    return int(args.func(args) or 0)
