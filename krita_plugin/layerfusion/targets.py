"""The plain data the controller and the document side hand each other (no Qt, no Krita)."""
from dataclasses import dataclass, field
from typing import Any, Dict


class UserError(Exception):
    """Something the artist can fix (no document, no group selected); shown as it is."""


@dataclass
class Target:
    """Where a generate job's layers go: the document, the canvas rectangle and the model's size."""

    document: Any
    x: int
    y: int
    width: int
    height: int
    gen_width: int
    gen_height: int


@dataclass
class ReblendSource:
    """The layers of a generated group as they now lie, read on the UI thread (BGRA bytes)."""

    document: Any
    group_key: str
    target: Target
    foreground: bytes
    background: bytes
    params: Dict[str, Any]


@dataclass
class HistoryEntry:
    job_id: str
    label: str
    params: Dict[str, Any]
    images: Dict[str, bytes] = field(default_factory=dict)  # PNGs; empty until fetched


def history_label(params: Dict[str, Any]) -> str:
    fg = str(params.get("foreground_prompt", "")).strip() or "?"
    bg = str(params.get("background_prompt", "")).strip() or "?"
    seed = params.get("seed")
    return "%s / %s%s" % (fg, bg, " · seed %s" % seed if seed is not None else "")
