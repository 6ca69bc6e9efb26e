"""The fair queue: arrival order per client, round-robin between clients (hand-worked orders)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from backend.server.fair_queue import FairQueue, dispatch_order


@dataclass(eq=False)
class Item:
    client: str
    name: str


def names(items: list) -> list:
    return [item.name for item in items]


def test_dispatch_order_takes_one_from_each_lane_in_turn() -> None:
    assert dispatch_order([["a1", "a2", "a3"], ["b1"], ["c1", "c2"]]) == ["a1", "b1", "c1", "a2", "c2", "a3"]
    assert dispatch_order([]) == []
    assert dispatch_order([[], ["b1"]]) == ["b1"]


def test_one_client_is_plain_arrival_order() -> None:
    queue: FairQueue[Item] = FairQueue()
    for n in range(4):
        queue.put(Item("a", "a%d" % n))
    assert [queue.take(0).name for _ in range(4)] == ["a0", "a1", "a2", "a3"]  # type: ignore[union-attr]
    assert queue.take(0) is None


def test_a_late_single_job_overtakes_the_rest_of_a_batch() -> None:
    queue: FairQueue[Item] = FairQueue()
    batch = [Item("a", "a%d" % n) for n in range(10)]
    for item in batch:
        queue.put(item)
    assert queue.take(0) is batch[0] and queue.take(0) is batch[1]  # two workers took the first two
    lone = Item("b", "b0")
    queue.put(lone)
    # Lanes now a:[a2..a9] (its turn next), b:[b0]: a2, b0, a3, ...
    assert queue.position(lone) == 1
    assert queue.position(batch[9]) == 8
    assert names(queue.jobs()) == ["a2", "b0", "a3", "a4", "a5", "a6", "a7", "a8", "a9"]
    assert names([queue.take(0), queue.take(0), queue.take(0)]) == ["a2", "b0", "a3"]  # type: ignore[list-item]


def test_withdraw_and_put_front() -> None:
    queue: FairQueue[Item] = FairQueue()
    a0, a1, b0 = Item("a", "a0"), Item("a", "a1"), Item("b", "b0")
    for item in (a0, a1, b0):
        queue.put(item)
    assert queue.withdraw(a1) and not queue.withdraw(a1)
    assert names(queue.jobs()) == ["a0", "b0"]
    assert queue.take(0) is a0
    assert queue.withdraw(b0) and len(queue) == 0
    retried = Item("c", "c0")
    queue.put(Item("d", "d0"))
    queue.put_front(retried)  # a job whose worker died before its first step: next, ahead of all
    assert names(queue.jobs()) == ["c0", "d0"]


def test_close_wakes_a_waiting_taker_with_none() -> None:
    queue: FairQueue[Item] = FairQueue()
    got = []
    taker = threading.Thread(target=lambda: got.append(queue.take()))
    taker.start()
    queue.close()
    taker.join(60)
    assert not taker.is_alive() and got == [None]
