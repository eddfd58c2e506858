"""The scheduling queue: order, back-off, and moves on cluster events."""
from __future__ import annotations

import asyncio

from ketch.scheduler import queue as q
from ketch.scheduler.queue import SchedulingQueue


def pod(name: str, priority: int = 0) -> dict:
    return {"metadata": {"name": name, "namespace": "ns", "uid": name}, "spec": {"priority": priority}}


def test_active_order_is_priority_then_age():
    sq = SchedulingQueue()
    for name, prio in (("a", 0), ("b", 10), ("c", 0), ("d", 10)):
        sq.add(pod(name, prio), f"ns/{name}")
    assert [sq.pop_nowait().key for _ in range(4)] == ["ns/b", "ns/d", "ns/a", "ns/c"]
    assert sq.pop_nowait() is None


def test_backoff_doubles_from_one_to_ten_seconds():
    qp = q.QueuedPod("ns/a", pod("a"))
    waits = []
    for attempts in range(1, 7):
        qp.attempts, qp.last_failure = attempts, 100.0
        waits.append(qp.backoff_expiry(1.0, 10.0) - 100.0)
    assert waits == [1, 2, 4, 8, 10, 10]


def test_unschedulable_waits_for_an_event(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(q.time, "monotonic", lambda: now[0])
    sq = SchedulingQueue()
    sq.add(pod("a"), "ns/a")
    qp = sq.pop_nowait()
    sq.requeue(qp.pod, qp.key, unschedulable=True, cycle=sq.cycle)
    now[0] += 30
    assert sq.pop_nowait() is None  # back-off is over, but nothing changed in the cluster
    assert sq.counts()["unschedulable"] == 1
    sq.move_all()
    assert sq.pop_nowait().key == "ns/a"


def test_moved_during_backoff_goes_to_backoff(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(q.time, "monotonic", lambda: now[0])
    sq = SchedulingQueue()
    sq.add(pod("a"), "ns/a")
    qp = sq.pop_nowait()
    sq.requeue(qp.pod, qp.key, unschedulable=True, cycle=sq.cycle)
    sq.move_all()
    assert sq.counts()["backoff"] == 1 and sq.pop_nowait() is None
    now[0] += 1.01
    assert sq.pop_nowait().key == "ns/a"


def test_event_during_attempt_is_not_lost(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(q.time, "monotonic", lambda: now[0])
    sq = SchedulingQueue()
    sq.add(pod("a"), "ns/a")
    qp = sq.pop_nowait()
    cycle = sq.cycle
    sq.move_all()  # a node was added while the pod was being tried
    sq.requeue(qp.pod, qp.key, unschedulable=True, cycle=cycle)
    assert sq.counts()["backoff"] == 1


def test_delete_and_done_forget_the_pod():
    sq = SchedulingQueue()
    sq.add(pod("a"), "ns/a")
    sq.delete("ns/a")
    assert sq.pop_nowait() is None and len(sq) == 0


def test_pop_waits_for_an_add():
    async def main() -> str:
        sq = SchedulingQueue()
        waiter = asyncio.create_task(sq.pop())
        await asyncio.sleep(0.05)
        assert not waiter.done()
        sq.add(pod("a"), "ns/a")
        return (await asyncio.wait_for(waiter, 2)).key
    assert asyncio.run(main()) == "ns/a"
