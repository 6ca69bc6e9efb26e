"""When a drag may start a live re-blend: at most one per interval and one at a time, from timestamps
only (no Qt, no Krita).

The first move of a drag does not fire at once: it starts the clock, and the first live re-blend goes
out one interval later if the foreground is still moving. A short nudge so costs nothing beyond the
settle re-blend that follows every drag, and each later one goes out at least an interval after the one
before it. The interval counts from when a re-blend was started, not from when a poll saw the move, so
polling more often than the interval adds no re-blends.

While the drag's last live re-blend is still on its way (encoded, queued or running), none starts: it is
let land, and the next one, for where the foreground is by then, goes out on the first move after it.
Were each new one to cancel the one before instead, a re-blend slower than the interval would never
land during the drag. The settle re-blend, for the final placement, does cancel a stale one.
"""
from typing import Optional


class LiveThrottle:
    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._since: Optional[float] = None  # the drag's start, then the last live re-blend's start

    def moved(self, now: float, busy: bool = False) -> bool:
        """A move seen at ``now`` (seconds, monotonic), ``busy`` while the last live re-blend is on its
        way: True when a live re-blend should start now."""
        if self._since is None:
            self._since = now
            return False
        if not busy and now - self._since >= self.interval_s:
            self._since = now
            return True
        return False

    def stopped(self) -> None:
        """The drag is over (the foreground settled, or its document closed): the next move starts anew."""
        self._since = None

    @property
    def dragging(self) -> bool:
        return self._since is not None
