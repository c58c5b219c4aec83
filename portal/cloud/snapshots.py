"""Snapshots of an instance's disks, as images new instances can start from.

The portal records one snapshot image per disk asked for (kind
``snapshot``, on the instance's node); the node's agent takes them all at
one instant and reports each one's progress until it is ready.
"""

from __future__ import annotations

import time
import uuid as uuidlib

from cloudstate.etcd import Compare, Put
from cloudstate.model import Image
from cloudstate.vocabulary import ObjectKind
from portal.accounts.actor import Actor
from portal.accounts.models import AuditAction
from portal.cloud import changes, store
from portal.cloud.errors import BadRequest, Conflict, NotReady
from portal.cloud.instances import KIND, InstanceRecord

CONFIG_DRIVE = "vdb"


def source_url(instance_uuid: str, device: str) -> str:
    """Where a snapshot came from, in Shaken Fist's notation."""
    return f"sf://instance/{instance_uuid}/{device}"


def devices_for(record: InstanceRecord, *, all_disks: bool, device: object) -> list[str]:
    disks = [d.device for d in record.spec.disks if d.type == "disk"]
    if device not in (None, ""):
        if not isinstance(device, str):
            raise BadRequest("device: must be a disk name such as vda")
        if device == CONFIG_DRIVE and device not in disks:
            raise BadRequest(f"device: {device} is the config drive, which is rebuilt at "
                             "every boot; snapshot one of the disks: " + ", ".join(disks))
        if device not in disks:
            raise BadRequest(f"device: instance {record.spec.name} has no disk {device}; "
                             f"its disks are {', '.join(disks)}")
        return [device]
    return disks if all_disks else disks[:1]


async def request(actor: Actor, record: InstanceRecord, *, all_disks: bool = False,
                  device: object = None) -> list[Image]:
    """One snapshot image per disk asked for; the instance's node takes them."""
    async with changes.changing(actor, AuditAction.SNAPSHOT, KIND,
                                namespace=record.spec.namespace, object_id=record.uuid,
                                object_name=record.spec.name) as entry:
        images = await _record_images(record, all_disks=all_disks, device=device)
        entry.detail = ", ".join(f"{image.device}: {image.uuid}" for image in images)
    name = record.spec.name
    await changes.event(actor, KIND, record.uuid,
                        f"snapshot of {', '.join(i.device or '' for i in images)} requested",
                        operation=AuditAction.SNAPSHOT,
                        images=[i.uuid for i in images])
    for image in images:
        await changes.event(actor, ObjectKind.IMAGE, image.uuid,
                            f"snapshot of {name} {image.device} requested",
                            operation=AuditAction.SNAPSHOT,
                            instance=record.uuid)
    return images


async def _record_images(record: InstanceRecord, *, all_disks: bool,
                         device: object) -> list[Image]:
    name = record.spec.name
    if record.state in ("deleting", "deleted"):
        raise Conflict(f"cannot snapshot instance {name}: it is being deleted")
    if record.state == "error":
        raise Conflict(f"cannot snapshot instance {name}: it is in error ({record.error})")
    if record.state != "created":
        raise NotReady(f"instance {name} is not created yet (it is {record.state}); "
                       "try again in a moment")
    devices = devices_for(record, all_disks=all_disks, device=device)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    etcd, keys = store.etcd(), store.keys()
    created_at = time.time()
    for attempt in range(5):
        suffix = "" if attempt == 0 else f"-{attempt + 1}"
        images = [Image(
            uuid=str(uuidlib.uuid4()), name=f"{name[:36]}-{dev}-{stamp}{suffix}",
            namespace=record.spec.namespace, source_url=source_url(record.uuid, dev),
            kind="snapshot", node=record.spec.node, instance_uuid=record.uuid, device=dev,
            created_at=created_at,
        ) for dev in devices]
        result = await etcd.txn(
            [Compare.absent(keys.image_name(i.namespace, i.name)) for i in images],
            [op for i in images for op in (Put(keys.image(i.uuid), i.to_json()),
                                          Put(keys.image_name(i.namespace, i.name), i.uuid))],
        )
        if result.succeeded:
            return images
    raise Conflict("too many snapshots of this instance at once; try again")
