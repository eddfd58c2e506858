"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does.

A candidate takes the Lease when it is free or its holder has not renewed within
leaseDurationSeconds, renews it every `retry_period`, and gives up leadership when it cannot renew
within `renew_deadline`. Writes use the Lease's resourceVersion, so two candidates cannot both win.
"""
from __future__ import annotations

import asyncio
import datetime
import logging
import socket
import uuid
from typing import Awaitable, Callable

from ..api.errors import ApiError
from .background import cancel_until_done
from .rest import Client

log = logging.getLogger("ketch.client.leader")


def identity() -> str:
    """A candidate's name, unique per process (upstream: hostname + "_" + a UUID)."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _micro(t: datetime.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(ts: str | None) -> datetime.datetime | None:
    if not ts:
        return None
    ts = ts.rstrip("Z")
    fmt = "%Y-%m-%dT%H:%M:%S.%f" if "." in ts else "%Y-%m-%dT%H:%M:%S"
    return datetime.datetime.strptime(ts, fmt).replace(tzinfo=datetime.timezone.utc)


class LeaderElector:
    def __init__(self, client: Client, name: str, namespace: str, identity: str, *,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0):
        self.leases = client.resource("coordination.k8s.io/v1", "Lease", namespace)
        self.name, self.namespace, self.identity = name, namespace, identity
        self.lease_duration, self.renew_deadline, self.retry_period = lease_duration, renew_deadline, retry_period
        self.is_leader = False

    async def try_acquire_or_renew(self) -> bool:
        now = _now()
        spec = {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.lease_duration),
                "renewTime": _micro(now)}
        try:
            lease = await self.leases.get(self.name)
        except ApiError as e:
            if e.code != 404:
                raise
            try:
                await self.leases.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                          "metadata": {"name": self.name, "namespace": self.namespace},
                                          "spec": {**spec, "acquireTime": _micro(now), "leaseTransitions": 0}})
                return True
            except ApiError as e2:
                if e2.code == 409:
                    return False
                raise
        current = lease.get("spec", {})
        holder = current.get("holderIdentity")
        renewed = _parse(current.get("renewTime")) or _parse(current.get("acquireTime"))
        duration = current.get("leaseDurationSeconds") or self.lease_duration
        expired = renewed is None or (now - renewed).total_seconds() > duration
        if holder and holder != self.identity and not expired:
            return False
        new_spec = {**current, **spec}
        if holder != self.identity:
            new_spec["acquireTime"] = _micro(now)
            new_spec["leaseTransitions"] = (current.get("leaseTransitions") or 0) + (1 if holder else 0)
        lease["spec"] = new_spec
        try:
            await self.leases.update(lease)
            return True
        except ApiError as e:
            if e.code == 409:
                return False
            raise

    async def run(self, on_started_leading: Callable[[], Awaitable[None]],
                  on_stopped_leading: Callable[[], None] | None = None) -> None:
        """Campaign until leading, run `on_started_leading` while renewing; return when leadership is lost."""
        loop = asyncio.get_running_loop()
        while not await self._attempt():
            await asyncio.sleep(self.retry_period)
        self.is_leader = True
        log.info("%s became leader of %s/%s", self.identity, self.namespace, self.name)
        work = asyncio.create_task(on_started_leading())
        try:
            last_renew = loop.time()
            while not work.done():
                await asyncio.sleep(self.retry_period)
                if await self._attempt():
                    last_renew = loop.time()
                elif loop.time() - last_renew > self.renew_deadline:
                    log.warning("%s lost leadership of %s/%s", self.identity, self.namespace, self.name)
                    break
        finally:
            self.is_leader = False
            await cancel_until_done(work)
            if on_stopped_leading is not None:
                on_stopped_leading()

    async def _attempt(self) -> bool:
        try:
            return await self.try_acquire_or_renew()
        except (ApiError, OSError, asyncio.TimeoutError) as e:
            log.info("leader election: %s", e)
            return False

    async def release(self) -> None:
        """Give the lease up (on clean shutdown) so another candidate can take it at once."""
        try:
            lease = await self.leases.get(self.name)
            if lease.get("spec", {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = None
                lease["spec"]["leaseDurationSeconds"] = 1
                await self.leases.update(lease)
        except (ApiError, OSError):
            pass
