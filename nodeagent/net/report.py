"""What the network node says about each network: its observed record in
etcd (state, error, the interfaces whose DHCP entries are in place, whether
it has egress) and the network's events.

The record is written only when something in it changed, so a pass that
found nothing to do costs etcd nothing; a change of state or error is also
an event.
"""

from __future__ import annotations

import time

from cloudstate.etcd import Etcd
from cloudstate.keys import Keys
from cloudstate.mirror import MirrorView
from cloudstate.model import NetworkObserved, NetworkSpec
from nodeagent.events import EventLog
from nodeagent.net.snapshot import Snapshot


class NetworkReporter:
    def __init__(self, *, node: str, keys: Keys, etcd: Etcd, mirror: MirrorView,
                 events: EventLog | None = None):
        self._node = node
        self._keys = keys
        self._etcd = etcd
        self._mirror = mirror
        self._events = events

    def record(self, snap: Snapshot, spec: NetworkSpec, *, state: str,
               error: str | None, applied: list[str] | None = None,
               egress: bool | None = None) -> NetworkObserved:
        """The observed record with these fields; the others as last written."""
        current = snap.observed.get(spec.uuid)
        return NetworkObserved(
            node=self._node, state=state, error=error,
            applied=sorted(applied if applied is not None else
                           (current.applied if current else [])),
            egress=egress if egress is not None else bool(current and current.egress),
            updated_at=time.time(),
        )

    async def report(self, snap: Snapshot, spec: NetworkSpec, *,
                     events: tuple[str, ...] | list[str] = (), **fields: object) -> None:
        """Write the observed record if something in it changed, and tell
        the event log what happened."""
        record = self.record(snap, spec, **fields)  # type: ignore[arg-type]
        current = snap.observed.get(spec.uuid)
        self.emit_changes(spec.uuid, current, record)
        for message in events:
            self.emit(spec.uuid, message, type="mutate")
        if current is not None and record.replace(updated_at=0) == current.replace(updated_at=0):
            return
        revision = await self._etcd.put(self._keys.observed_network(spec.uuid), record.to_json())
        await self._mirror.wait_for_revision(revision,
                                             keys=[self._keys.observed_network(spec.uuid)])

    async def refused(self, snap: Snapshot, uuid: str, reason: str) -> None:
        """A network whose record the agent refused: its state says why, and
        whatever was built for it is left as it is."""
        current = snap.observed.get(uuid)
        record = NetworkObserved(node=self._node, state="error",
                                 error=f"the network node refused its record: {reason}",
                                 applied=current.applied if current else [],
                                 egress=bool(current and current.egress), updated_at=time.time())
        self.emit_changes(uuid, current, record)
        if current is not None and record.replace(updated_at=0) == current.replace(updated_at=0):
            return
        revision = await self._etcd.put(self._keys.observed_network(uuid), record.to_json())
        await self._mirror.wait_for_revision(revision, keys=[self._keys.observed_network(uuid)])

    def emit_changes(self, uuid: str, before: NetworkObserved | None,
                     after: NetworkObserved) -> None:
        if before is None or before.state != after.state or before.error != after.error:
            message = f"state is now {after.state}"
            if after.error:
                message += f": {after.error}"
            self.emit(uuid, message, type="status", extra={"node": self._node})

    def emit(self, uuid: str, message: str, **kwargs: object) -> None:
        if self._events is not None:
            self._events.emit("network", uuid, message, **kwargs)  # type: ignore[arg-type]
