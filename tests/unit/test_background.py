"""Background components stop when asked, even one that loses a cancel."""
from __future__ import annotations

import asyncio

from ketch.client.background import Background


class Stubborn(Background):
    """A retry loop that takes one cancel for a transient error (as a timeout firing at the same
    moment as the cancel makes it), then carries on."""

    def __init__(self) -> None:
        self.swallowed = 0

    async def run(self) -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if self.swallowed:
                    raise
                self.swallowed += 1
                asyncio.current_task().uncancel()


async def test_stop_ends_a_component_that_lost_a_cancel():
    component = Stubborn()
    task = component.start()
    await asyncio.sleep(0)
    stopping = asyncio.ensure_future(component.stop())
    done, _ = await asyncio.wait({stopping}, timeout=5)
    assert stopping in done and task.done() and component.swallowed == 1


class Failing(Background):
    async def run(self) -> None:
        raise RuntimeError("broken")


async def test_stop_after_the_component_died():
    component = Failing()
    task = component.start()
    await asyncio.sleep(0)
    await component.stop()
    assert task.done() and isinstance(task.exception(), RuntimeError)


async def test_stopping_a_stopper_still_stops_what_it_was_stopping():
    """A component stopping its children is itself cancelled meanwhile (its own stopper asking
    again): the children still end before the cancel goes on up."""
    from ketch.client.background import cancel_until_done
    child = Stubborn()
    child_task = child.start()
    await asyncio.sleep(0)

    async def parent() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await cancel_until_done(child_task)

    parent_task = asyncio.ensure_future(parent())
    await asyncio.sleep(0)
    parent_task.cancel()
    await asyncio.sleep(0.1)  # the parent is now waiting for the child, which lost the first cancel
    parent_task.cancel()      # asked again before the child has ended
    done, _ = await asyncio.wait({parent_task}, timeout=5)
    assert parent_task in done and parent_task.cancelled() and child_task.done()
