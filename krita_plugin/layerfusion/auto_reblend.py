"""Auto re-blend: a watcher that re-blends a group when its Foreground has moved.

Krita emits no signal when a layer moves, so the active group's Foreground is polled.
"""
import time
from typing import Any, Dict, Generator, Optional, Tuple

from .controller import Controller, step_through
from .layers import bounds_box, find_group, member, uid
from .live_throttle import LiveThrottle
from .local_blend import Box
from .qt import QObject, QTimer
from .reblend import KritaSide, name_blends, read_source
from .settings import Settings
from .targets import ReblendSource, UserError

POLL_MS = 250
LIVE_POLL_MS = 60  # with Fast and auto re-blend: often enough to follow a drag
SETTLE_MS = 700  # the foreground must stay put this long before an automatic re-blend


class AutoReblend(QObject):
    """Watches the active group's Foreground; re-blends once it has stopped moving for SETTLE_MS.

    Without Fast, a move while a re-blend runs cancels that (now stale) job. With Fast on too (live
    mode), the watcher polls every LIVE_POLL_MS and, while the foreground keeps moving, starts a
    re-blend at most every ``live_interval_ms`` and only once the one before it has landed
    (LiveThrottle: the first one an interval into the drag), so the Blend follows the drag at the
    server's pace. The settle re-blend still runs once the drag stops, unless the last live one was for
    that very placement, and cancels a stale one still on its way (the controller does that, and drops
    superseded results): the final placement always gets its Blend. A document closed mid-drag is let
    go: its re-blend is cancelled, nothing written.
    """

    def __init__(self, controller: Controller, side: KritaSide) -> None:
        super().__init__(controller)
        self.controller = controller
        self.side = side
        self._seen: Dict[str, Tuple[int, int, int, int]] = {}
        self._moved: Optional[Tuple[Any, Any]] = None  # the dragged group awaiting its settle re-blend
        self._watched: Optional[Tuple[Any, str]] = None  # (document, group key) of the last one re-blended
        self._asked: Dict[str, Box] = {}  # group key -> the Foreground's box its latest re-blend was asked for
        # The drag's last read of its group: the next live re-blend reads only the Foreground anew. The
        # first comes from the prefetch a drag starts with (KritaSide.prefetch_steps).
        self._drag_read: Optional[ReblendSource] = None
        self._prefetch: Optional[Generator[None, None, Optional[ReblendSource]]] = None
        self._throttle = LiveThrottle(Settings().live_interval_ms / 1000.0)
        # Re-blends started during drags (live mode) and once the foreground settled: what a script sees.
        self.live_started = self.settle_started = 0
        self._poll = QTimer(self)
        self._poll.setInterval(POLL_MS)
        self._poll.timeout.connect(self.check)
        self._settle = QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(SETTLE_MS)
        self._settle.timeout.connect(self._fire)

    def seen(self, key: str) -> Optional[Tuple[int, int, int, int]]:
        """Where the watcher last saw the Foreground of the group ``key`` (x, y, width, height), if it has."""
        return self._seen.get(key)

    @property
    def settling(self) -> bool:
        """Whether the foreground moved less than SETTLE_MS ago: the settle re-blend is still to come."""
        return self._settle.isActive()

    def set_enabled(self, on: bool) -> None:
        if on:
            self._seen.clear()
            self._poll.start()
        else:
            self._poll.stop()
            self._settle.stop()
            self._drag_over()

    def check(self) -> None:
        values = self.controller.panel.values()
        live = values.auto_reblend and values.fast
        self._poll.setInterval(LIVE_POLL_MS if live else POLL_MS)  # a drag is seen while it happens
        self._throttle.interval_s = values.live_interval_ms / 1000.0
        if self._let_go_of_closed():
            return
        try:
            doc = self.side.active()
        except UserError:
            return
        if not self.side.is_open(doc):  # a pinned document (scripts, tests) that was closed
            return
        group = find_group(doc)
        if group is None:
            return
        fg = member(doc, group, "foreground")
        if fg is None:
            return
        name_blends(doc, group)  # after a Ctrl+Z of a re-blend
        where = bounds_box(fg)
        key = uid(group)
        before = self._seen.get(key)
        self._seen[key] = where
        if before is None or before == where:
            return
        self._moved = (doc, group)
        self._watched = (doc, key)
        self._settle.start()  # restarts the countdown on every move
        if not live:
            self.controller.cancel_reblend(key)
            self._asked.pop(key, None)  # that re-blend will not land: the settle one must run
        else:
            if not self._throttle.dragging and self._drag_read is None:
                self._prefetch_for(doc, group)  # a drag begins: its first live re-blend is an interval away
            if self._throttle.moved(time.monotonic(), busy=self.controller.reblend_busy(key)):
                self.live_started += 1
                self._start(doc, group, live=True)

    def _prefetch_for(self, doc: Any, group: Any) -> None:
        steps = self.side.prefetch_steps(doc, group)
        self._prefetch = steps

        def done(kept: Optional[ReblendSource], error: Optional[BaseException]) -> None:
            if self._prefetch is steps:
                self._prefetch = None
                if error is None and self._drag_read is None:
                    self._drag_read = kept

        step_through(steps, done)

    def _let_go_of_closed(self) -> bool:
        """Whether the watched document was closed (then its re-blend is cancelled and it is forgotten)."""
        if self._watched is None or self.side.is_open(self._watched[0]):
            return False
        key = self._watched[1]
        busy = self._moved is not None or self.controller.reblend_busy(key)
        self.controller.cancel_reblend(key)
        self._watched = self._moved = None
        self._seen.pop(key, None)
        self._asked.pop(key, None)
        self._settle.stop()
        self._drag_over()
        if busy:
            self.controller.panel.show_message("The document was closed mid-drag: its re-blend was cancelled, "
                                               "nothing was inserted.")
        return True

    def _drag_over(self) -> None:
        self._throttle.stopped()
        self._drag_read = None  # what the drag read may have changed since: the next re-blend reads anew
        self._stop_prefetch()

    def _stop_prefetch(self) -> None:
        if self._prefetch is not None:
            self._prefetch.close()
            self._prefetch = None

    def _fire(self) -> None:
        self._drag_over()
        if self._moved is None:
            return
        doc, group = self._moved
        self._moved = None
        key = uid(group)
        if key in self._asked and self._asked[key] == self._seen.get(key):
            return  # the drag's last live re-blend was for this very placement: it is the final one
        self.settle_started += 1
        self._start(doc, group)

    def _start(self, doc: Any, group: Any, live: bool = False) -> None:
        if not self.side.is_open(doc) or group.parentNode() is None:
            return
        key = uid(group)
        if key in self._seen:
            self._asked[key] = self._seen[key]
        try:
            # During a drag only the Foreground moves: its Background and Blend are taken over from the
            # drag's previous read while they are the same layers at the same bounds.
            source = read_source(doc, group, reuse=self._drag_read if live else None)
            if live:
                self._drag_read = source
                self._stop_prefetch()  # not done in time: this read has what it was reading
            self.controller.reblend(source)
        except UserError as err:
            self.controller.panel.show_error(str(err))
