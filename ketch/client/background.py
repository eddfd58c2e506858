"""A component that runs `run()` as one background task: started once, stopped by cancelling it."""
from __future__ import annotations

import asyncio
import logging


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
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping, whatever it died of
                pass
            self._task = None
