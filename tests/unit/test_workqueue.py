"""The work queue's delayed adds: one waiting entry per key, at the earliest time asked for."""
from __future__ import annotations

import asyncio

from ketch.client.workqueue import WorkQueue


async def test_delayed_adds_of_one_key_wait_once_at_the_earliest_time():
    q = WorkQueue()
    loop = asyncio.get_running_loop()
    start = loop.time()
    q.add_after("pod", 0.3)
    q.add_after("pod", 0.1)     # sooner: replaces the 0.3 s timer
    q.add_after("pod", 0.5)     # later: the 0.1 s one stands
    assert await asyncio.wait_for(q.get(), 1) == "pod"
    assert 0.08 < loop.time() - start < 0.25
    q.done("pod")
    # Nothing else is waiting: the replaced and the later requests left no timer behind.
    try:
        await asyncio.wait_for(q.get(), 0.6)
        raise AssertionError("the key came back from a timer that should not exist")
    except asyncio.TimeoutError:
        pass
    q.shut_down()


async def test_other_keys_keep_their_own_timers():
    q = WorkQueue()
    q.add_after("a", 0.05)
    q.add_after("b", 0.1)
    got = {await asyncio.wait_for(q.get(), 1), await asyncio.wait_for(q.get(), 1)}
    assert got == {"a", "b"}
    q.shut_down()
