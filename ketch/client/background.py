"""A component that runs `run()` as one background task: started once, stopped by cancelling it."""
from __future__ import annotations

import asyncio


class Background:
    _task: asyncio.Task | None = None

    async def run(self) -> None:
        raise NotImplementedError

    def start(self) -> asyncio.Task:
        if self._task is None:
            self._task = asyncio.create_task(self.run())
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping, whatever it died of
                pass
            self._task = None
