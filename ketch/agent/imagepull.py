"""The kubelet's image manager: imagePullPolicy, pull back-off, and the events the kubelet writes
(Pulling, Pulled, Failed, BackOff, ErrImageNeverPull).

Offline fallback (ketch's choice, so the book's `:latest` images work on a machine that reaches no
registry): with policy Always, when the registry cannot be reached at all and the image is already
in the store, the stored image is used as with IfNotPresent. A registry that answers (not found,
unauthorized) still fails the pull, as upstream.
"""
from __future__ import annotations

import asyncio
import logging
import time

from ..api.durations import format_seconds
from ..client.events import NORMAL, WARNING
from ..images import reference
from ..images.errors import ImageError, ImagePullError
from .backoff import IMAGE_INITIAL, IMAGE_MAX, Backoff
from .status import Waiting

log = logging.getLogger("ketch.agent.images")


class ImagePullFailed(Exception):
    def __init__(self, waiting: Waiting):
        super().__init__(waiting.message)
        self.waiting = waiting


class ImageManager:
    def __init__(self, store, recorder):
        self.store = store
        self.recorder = recorder
        self.backoff = Backoff(IMAGE_INITIAL, IMAGE_MAX)
        self._failed_at: dict[tuple, float] = {}
        self._pulls: dict[str, asyncio.Future] = {}

    async def ensure(self, pod: dict, container: dict, field_path: str):
        """The container's image, present in the store; raises ImagePullFailed with the waiting
        state the container shows (ErrImagePull, ImagePullBackOff, ErrImageNeverPull, InvalidImageName)."""
        image_name = container.get("image") or ""
        policy = container.get("imagePullPolicy") or "IfNotPresent"
        try:
            ref = str(reference.parse(image_name))
        except ValueError as e:   # reference.InvalidReference
            message = f'Failed to apply default image tag "{image_name}": couldn\'t parse image reference ' \
                      f'"{image_name}": {e}'
            self.recorder.event(pod, WARNING, "InspectFailed", message, field_path)
            raise ImagePullFailed(Waiting("InvalidImageName", message)) from None
        present = self.store.resolve(ref)
        if present is not None and policy != "Always":
            self.recorder.event(pod, NORMAL, "Pulled", f'Container image "{image_name}" already present on machine',
                                field_path)
            return present
        if policy == "Never":
            message = f'Container image "{image_name}" is not present with pull policy of Never'
            self.recorder.event(pod, WARNING, "ErrImageNeverPull", message, field_path)
            raise ImagePullFailed(Waiting("ErrImageNeverPull", message))
        key = (pod["metadata"]["uid"], container["name"], ref)
        remaining = self.backoff.remaining(key, self._failed_at.get(key, 0.0))
        if remaining > 0:
            message = f'Back-off pulling image "{image_name}"'
            self.recorder.event(pod, NORMAL, "BackOff", message, field_path)
            self.recorder.event(pod, WARNING, "Failed", "Error: ImagePullBackOff", field_path)
            raise ImagePullFailed(Waiting("ImagePullBackOff", message))
        self.recorder.event(pod, NORMAL, "Pulling", f'Pulling image "{image_name}"', field_path)
        started = time.monotonic()
        try:
            image = await self._pull(ref)
        except ImageError as e:
            code = getattr(e, "code", "Unknown")
            if present is not None and getattr(e, "unreachable", False):
                log.info("registry for %s unreachable; using the stored image", ref)
                self.recorder.event(pod, NORMAL, "Pulled",
                                    f'Container image "{image_name}" already present on machine', field_path)
                return present
            self.backoff.next(key)
            self._failed_at[key] = time.time()
            detail = f"rpc error: code = {code} desc = {e}" if isinstance(e, ImagePullError) else str(e)
            self.recorder.event(pod, WARNING, "Failed", f'Failed to pull image "{image_name}": {detail}', field_path)
            self.recorder.event(pod, WARNING, "Failed", "Error: ErrImagePull", field_path)
            raise ImagePullFailed(Waiting("ErrImagePull", detail)) from None
        self.backoff.reset(key)
        took = time.monotonic() - started
        self.recorder.event(pod, NORMAL, "Pulled",
                            f'Successfully pulled image "{image_name}" in {format_seconds(took, precision_ns=1_000_000)} '
                            f'({format_seconds(took, precision_ns=1_000_000)} including waiting). Image size: {getattr(image, "size", 0)} bytes.',
                            field_path)
        return image

    async def _pull(self, ref: str):
        """One pull per reference at a time, however many containers wait for it."""
        running = self._pulls.get(ref)
        if running is None:
            running = self._pulls[ref] = asyncio.ensure_future(self.store.pull(ref))
            running.add_done_callback(lambda _f: self._pulls.pop(ref, None))
        return await asyncio.shield(running)

    def forget_pod(self, uid: str) -> None:
        self.backoff.forget_prefix((uid,))
        for key in [k for k in self._failed_at if k[0] == uid]:
            del self._failed_at[key]

