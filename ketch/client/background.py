"""A component that runs `run()` as one background task: started once, stopped by cancelling it."""
from __future__ import annotations

import asyncio
import logging


async def cancel_until_done(*tasks: asyncio.Future) -> None:
    """Cancel tasks and wait until they have ended. A cancel can be lost: a timeout that expires
    at the same moment turns it into a TimeoutError, which a retry loop catches and carries on, so
    each task still running a second later is cancelled again. Their outcomes are not raised; a
    cancel of the caller meanwhile is raised once they have ended."""
    pending = {t for t in tasks if not t.done()}
    interrupted = False
    while pending:
        for task in pending:
            task.cancel()
        try:
            _, pending = await asyncio.wait(pending, timeout=1.0)
        except asyncio.CancelledError:  # our caller is being stopped too: finish stopping these first
            interrupted = True
            pending = {t for t in pending if not t.done()}
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: it was logged, or is of no interest when stopping
    if interrupted:
        raise asyncio.CancelledError


class Background:
    _task: asyncio.Task | None = None

    async def run(self) -> None:
        raise NotImplementedError

    def start(self) -> asyncio.Task:
        if self._task is None:
            self._task = asyncio.create_task(self.run())
            self._task.add_done_callback(self._ended)
        return self._task

    def _ended(self, task: asyncio.Task) -> None:
        # A component that dies on its own says so at once, not when someone stops it.
        if not task.cancelled() and task.exception() is not None:
            logging.getLogger(type(self).__module__).error(
                "%s stopped: %r", type(self).__name__, task.exception(), exc_info=task.exception())

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_until_done(self._task)  # what it died of, if anything, was logged by _ended
            self._task = None
