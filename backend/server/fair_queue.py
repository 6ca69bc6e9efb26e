"""The waiting jobs: in arrival order per client, taken round-robin between clients.

One artist's batch of ten must not hold back another artist's single job: each client has its own
lane, and the worker(s) take the head of the next lane in turn. With one client this is plain FIFO,
which is what a home server sees.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from typing import Deque, Generic, List, Optional, Protocol, Sequence, TypeVar


class Queued(Protocol):
    client: str


T = TypeVar("T")
J = TypeVar("J", bound=Queued)


def dispatch_order(lanes: Sequence[Sequence[T]]) -> List[T]:
    """The order the lanes' items are taken in: the first of every lane, then the second of every
    lane, and so on, lanes in their turn order."""
    order: List[T] = []
    depth = max((len(lane) for lane in lanes), default=0)
    for rank in range(depth):
        order.extend(lane[rank] for lane in lanes if rank < len(lane))
    return order


class FairQueue(Generic[J]):
    """Thread-safe: the event loop puts and withdraws, worker threads take."""

    def __init__(self) -> None:
        # Lanes in turn order: the lane taken from last goes to the back.
        self._lanes: "OrderedDict[str, Deque[J]]" = OrderedDict()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, job: J) -> None:
        with self._cond:
            self._lanes.setdefault(job.client, deque()).append(job)
            self._cond.notify()

    def put_front(self, job: J) -> None:
        """Back at the head of its lane (a job retried after its worker died), and its lane next."""
        with self._cond:
            lane = self._lanes.setdefault(job.client, deque())
            lane.appendleft(job)
            self._lanes.move_to_end(job.client, last=False)
            self._cond.notify()

    def take(self, timeout: Optional[float] = None) -> Optional[J]:
        """The next job, waiting for one; None once closed (or after ``timeout`` seconds with none)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._closed or bool(self._lanes), timeout):
                return None
            if self._closed:
                return None
            client, lane = next(iter(self._lanes.items()))
            job = lane.popleft()
            if lane:
                self._lanes.move_to_end(client)
            else:
                del self._lanes[client]
            return job

    def withdraw(self, job: J) -> bool:
        """Takes a job out; False when a worker already took it (or it never was here)."""
        with self._cond:
            lane = self._lanes.get(job.client)
            if lane is None or job not in lane:
                return False
            lane.remove(job)
            if not lane:
                del self._lanes[job.client]
            return True

    def position(self, job: J) -> Optional[int]:
        """How many jobs will be taken before it; None when it is not waiting."""
        order = self.jobs()
        return order.index(job) if job in order else None

    def jobs(self) -> List[J]:
        """The waiting jobs in the order they will be taken."""
        with self._cond:
            return dispatch_order([list(lane) for lane in self._lanes.values()])

    def __len__(self) -> int:
        with self._cond:
            return sum(len(lane) for lane in self._lanes.values())

    def close(self) -> None:
        """Wakes every waiting taker with None; the jobs still here stay (for the caller to end)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
