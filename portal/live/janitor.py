"""Forget instances, networks and artifacts that were deleted long ago, and
keep storage tidy.

Shaken Fist's client reads a deleted object back by UUID to see it
"deleted", so records stay for a while (an hour, as Shaken Fist keeps them);
after that they would only grow etcd. Storage is swept too: versions past
an artifact's limit are dropped, blobs nothing uses any more are deleted
(an instance's deletion may have been their last use), uploads never
converted expire. Every portal process sweeps now and then; every change
is a fenced transaction, so no leader is needed. The ASGI lifespan starts
the sweeping (``run``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from cloudstate.etcd import Compare, EtcdUnavailable, KeyValue, Put
from cloudstate.keys import Keys
from cloudstate.mirror import Mirror
from cloudstate.model import InstanceSpec, InterfaceSpec
from portal.cloud import artifacts, blobs, catalogue, instances, networks, store, uploads
from portal.live.hub import hub

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Swept:
    """One kind of object the janitor forgets."""

    name: str  # for the log, plural
    family: Callable[[Keys], str]  # the prefix of its desired records
    observed: Callable[[Keys, str], str]  # the key of one's observed record
    record: Callable[[KeyValue, KeyValue | None], Any]  # from_kvs
    purge: Callable[[Any], Awaitable[bool]]


_KINDS = (
    _Swept("instances", lambda k: k.instances, Keys.observed_instance,
           instances.InstanceRecord.from_kvs, instances.purge),
    _Swept("networks", lambda k: k.networks, Keys.observed_network,
           networks.NetworkRecord.from_kvs, networks.purge),
)


def due(record: instances.InstanceRecord | networks.NetworkRecord, now: float) -> bool:
    deleted_at = record.spec.deleted_at
    return (record.state == "deleted" and deleted_at is not None
            and now - deleted_at > settings.DELETED_RETENTION)


async def sweep(mirror: Mirror, keys: Keys) -> int:
    """Purge what is due; returns how many records went."""
    now = time.time()
    total = 0
    for kind in _KINDS:
        purged = 0
        for kv in mirror.items(kind.family(keys)):
            found = keys.classify(kv.key)
            if found is None:
                continue
            record = kind.record(kv, mirror.get(kind.observed(keys, found.uuid)))
            if due(record, now) and await kind.purge(record):
                purged += 1
        if purged:
            log.info("purged %d %s deleted more than %d s ago", purged, kind.name,
                     settings.DELETED_RETENTION)
        total += purged
    return total


async def copy_instances(mirror: Mirror, keys: Keys) -> int:
    """Write the node's copy of any desired instance record that lacks an
    up-to-date one, and its node into any interface record without it
    (records written before agents followed only their own node's
    instances: nodeagent.scope); returns how many were written. Every write
    of a record writes its copy too, so after an upgrade this finds each
    record once."""
    written = 0
    for kv in mirror.items(keys.instances):
        if (uuid := keys.uuid_of(kv.key, keys.instances)) is None:
            continue
        copy = keys.node_instance(InstanceSpec.from_json(kv.value).node, uuid)
        held = mirror.get(copy)
        if held is not None and held.value == kv.value:
            continue
        result = await store.etcd().txn([Compare.unchanged_since(kv.key, kv.mod_revision)],
                                        [Put(copy, kv.value)])
        written += result.succeeded
    for kv in mirror.items(keys.interfaces):
        iface = InterfaceSpec.from_json(kv.value)
        spec_kv = mirror.get(keys.instance(iface.instance_uuid))
        if iface.node is not None or spec_kv is None:
            continue
        node = InstanceSpec.from_json(spec_kv.value).node
        result = await store.etcd().txn([Compare.unchanged_since(kv.key, kv.mod_revision)],
                                        [Put(kv.key, iface.replace(node=node).to_json())])
        written += result.succeeded
    if written:
        log.info("wrote %d nodes' copies of instance records, or interfaces' nodes", written)
    return written


async def sweep_storage(now: float) -> int:
    """Tidy artifacts, delete unused blobs, forget what is long gone;
    returns how many records changed."""
    found = await catalogue.load()
    changed = await artifacts.tidy(found)
    changed += await blobs.collect_garbage()
    changed += await artifacts.purge(found, now)
    changed += await blobs.purge(found, now)
    changed += await uploads.expire(now)
    if changed:
        log.info("storage sweep: %d records changed", changed)
    return changed


async def run() -> None:
    """Sweep every JANITOR_INTERVAL, for as long as the portal runs; copy
    instance records for their nodes at once (an upgraded cloud's agents
    follow only the copies)."""
    with contextlib.suppress(EtcdUnavailable, TimeoutError):
        live = await hub()
        await copy_instances(live.mirror, live.keys)
    while True:
        # Jitter keeps several portal processes from sweeping in step.
        await asyncio.sleep(settings.JANITOR_INTERVAL * random.uniform(0.8, 1.2))
        try:
            live = await hub()
            await copy_instances(live.mirror, live.keys)
            await sweep(live.mirror, live.keys)
            await sweep_storage(time.time())
        except (EtcdUnavailable, TimeoutError) as exc:
            log.warning("janitor: etcd unavailable (%s)", exc)
