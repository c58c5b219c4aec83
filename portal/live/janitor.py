"""Forget instances and networks that were deleted long ago.

Shaken Fist's client reads a deleted object back by UUID to see it
"deleted", so records stay for a while (an hour, as Shaken Fist keeps them);
after that they would only grow etcd. Every portal process sweeps now and
then; purges are fenced transactions, so no leader is needed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from django.conf import settings

from cloudstate.etcd import EtcdUnavailable
from cloudstate.model import NetworkObserved, NetworkSpec
from portal.cloud import instances, networks
from portal.live.hub import Hub

log = logging.getLogger(__name__)


def due(record: instances.InstanceRecord | networks.NetworkRecord, now: float) -> bool:
    deleted_at = record.spec.deleted_at
    return (record.state == "deleted" and deleted_at is not None
            and now - deleted_at > settings.DELETED_RETENTION)


async def sweep(hub: Hub) -> int:
    now = time.time()
    purged = 0
    for kv in hub.mirror.items(hub.keys.instances):
        uuid = hub.keys.uuid_of(kv.key, hub.keys.instances)
        record = hub.instance(uuid) if uuid else None
        if record is not None and due(record, now) and await instances.purge(record):
            purged += 1
    if purged:
        log.info("purged %d instances deleted more than %d s ago", purged,
                 settings.DELETED_RETENTION)
    return purged + await _sweep_networks(hub, now)


async def _sweep_networks(hub: Hub, now: float) -> int:
    purged = 0
    for kv in hub.mirror.items(hub.keys.networks):
        spec = NetworkSpec.from_json(kv.value)
        if spec.desired != "deleted":
            continue
        observed_kv = hub.mirror.get(hub.keys.observed_network(spec.uuid))
        record = networks.NetworkRecord(
            spec=spec, revision=kv.mod_revision,
            observed=NetworkObserved.from_json(observed_kv.value) if observed_kv else None)
        if due(record, now) and await networks.purge(record):
            purged += 1
    if purged:
        log.info("purged %d networks deleted more than %d s ago", purged,
                 settings.DELETED_RETENTION)
    return purged


async def run(hub: Hub) -> None:
    while True:
        # Jitter keeps several portal processes from sweeping in step.
        await asyncio.sleep(settings.JANITOR_INTERVAL * random.uniform(0.8, 1.2))
        try:
            await sweep(hub)
        except EtcdUnavailable as exc:
            log.warning("janitor: etcd unavailable (%s)", exc)
