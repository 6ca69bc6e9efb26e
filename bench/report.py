"""docs/PERFORMANCE.md is shared by every benchmark: each one owns one "## " section and replaces it."""
from __future__ import annotations

import os
import platform
import re
from datetime import date
from pathlib import Path

PERFORMANCE = Path(__file__).resolve().parents[1] / "docs" / "PERFORMANCE.md"
HEADER = "# Performance\n\nWritten by the benchmarks in `bench/`; each section says how it was measured.\n"


def machine() -> str:
    """One line naming the machine and the day, for every table."""
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    return f"{platform.node() or 'host'}: {device}, torch {torch.__version__}, {date.today().isoformat()}"


def write_section(title: str, body: str, path: Path = PERFORMANCE) -> None:
    text = path.read_text() if path.exists() else HEADER
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
