"""The plain data the controller and the document side hand each other (no Qt, no Krita)."""
from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING,
    Any,
    Dict,
    Generator,
    List,
    Optional,
    Protocol,
    Sequence,
    Tuple,
    Union,
    runtime_checkable,
)

if TYPE_CHECKING:
    from .canvas_jobs import CanvasSource

MASK = "mask_hard"  # the one method map the plugin can insert: as the hidden layer "Mask"
# A generated group's layers, bottom to top: (image name, layer name, visible). The Mask sits below
# the Foreground and stays hidden: it is there to be looked at or turned into a selection, not seen.
# With "Blend as layers" the light layers join in (only those a result holds are created); the
# Foreground and its pair then sit in a sub-group "Object", so inherit alpha clips the pair to it.
LAYER_STACK = (("background", "Background", True), ("shadows", "Shadows", True), ("light", "Light", True),
               (MASK, "Mask", False), ("foreground", "Foreground", True),
               ("foreground_shadows", "Foreground shadows", True), ("foreground_light", "Foreground light", True),
               ("blend", "Blend", True))
LIGHT_MODES = {"shadows": "multiply", "light": "screen", "foreground_shadows": "multiply",
               "foreground_light": "screen"}
CLIPPED = ("foreground", "foreground_shadows", "foreground_light")  # in "Object" when the light is split


# BGRA pixel bytes, or a view of a buffer read from Krita (a whole 2048² layer is 16 MB: not copied).
Pixels = Union[bytes, memoryview]


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
    background: Pixels
    params: Dict[str, Any]
    # Where the Foreground's visible pixels now are (group pixels); with a Blend made for an earlier
    # placement, the region the move affected and that Blend: a local re-blend (local_blend.py).
    foreground_box: Optional[Tuple[int, int, int, int]] = None
    changed: Optional[Tuple[int, int, int, int]] = None
    previous_blend: Optional[Pixels] = None
    # The box of the group's rectangle that ``foreground`` covers (the layer's bounds; transparent
    # around it); None: all of it. A small object on a large canvas is read, not the whole canvas.
    foreground_at: Optional[Tuple[int, int, int, int]] = None
    # Which layer (uid and bounds) ``background`` and ``previous_blend`` were read from, where that can
    # be said, and their base64 PNGs at the generation size once encoded: a later read of the same drag
    # takes both over instead of reading and encoding them again (reblend.read_source's ``reuse``).
    layer_keys: Dict[str, Any] = field(default_factory=dict)
    pngs: Dict[str, str] = field(default_factory=dict)

    def pixels(self, role: str) -> Optional[Pixels]:
        """``background`` or ``previous_blend`` by its role name (as in ``layer_keys`` and ``pngs``)."""
        return self.previous_blend if role == "previous_blend" else self.background


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


def layer_plan(layers: Dict[str, Any]) -> List[Tuple[str, str, bool]]:
    """The LAYER_STACK entries a result holds, bottom to top: what the document side creates."""
    return [entry for entry in LAYER_STACK if entry[0] in layers]


@runtime_checkable
class Documents(Protocol):
    """The document side the controller drives: reblend.KritaSide in Krita, recording fakes in the tests.

    Every call runs on the UI thread; ``UserError`` is how a method says the artist must act first."""

    def generation_target(self, target_pixels: int) -> Target:
        """Where a generate job's layers will go: the active document, its selection or the whole canvas."""
        ...

    def is_open(self, doc: Any) -> bool:
        ...

    def insert_steps(self, target: Target, layers: Dict[str, bytes], params: Dict[str, Any],
                     job_id: str) -> Generator[None, None, Any]:
        """Insert a result as one group, yielding between layers (the event loop runs in between); what
        it returns is what the controller's ``inserted`` signal carries. All or nothing."""
        ...

    def reblend_source(self) -> ReblendSource:
        """The active group's layers as they now lie."""
        ...

    def replace_steps(self, source: ReblendSource, blend: bytes, params: Dict[str, Any]) -> Generator[None, None, Any]:
        """Put a re-blend's Blend in (BGRA at the group's size), yielding between Krita's calls."""
        ...

    def select_foreground(self) -> Any:
        """Select the active group's Foreground alpha."""
        ...

    def canvas_source(self, kind: str, target_pixels: int, blend_layers: bool,
                      nodes: Optional[Sequence[Any]] = None) -> "CanvasSource":
        """What a job on the artist's own layers (canvas_jobs.py) is asked on."""
        ...

    def insert_canvas(self, source: "CanvasSource", layers: Dict[str, bytes], params: Dict[str, Any],
                      job_id: str) -> Any:
        ...
