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
