"""Snapshots of an instance's disks, as artifacts new instances can start from.

As in Shaken Fist, each disk has one snapshot artifact (type ``snapshot``,
source ``sf://instance/<uuid>/<disk>``), and each snapshot taken is a new
version of it: a blob recorded on the instance's node, which that node's
agent takes (all of one request at one instant) and reports until ready.
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass

from cloudstate.model import Blob
from cloudstate.storage import Version
from cloudstate.vocabulary import ObjectKind
from portal.accounts.actor import Actor
from portal.accounts.models import AuditAction
from portal.cloud import artifacts, changes
from portal.cloud.catalogue import ArtifactRecord, Catalogue
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


@dataclass(frozen=True)
class Taken:
    """One disk's snapshot asked for: Shaken Fist's answer names all three."""

    device: str
    artifact_uuid: str
    blob_uuid: str
    source_url: str


async def request(actor: Actor, record: InstanceRecord, *, all_disks: bool = False,
                  device: object = None) -> list[Taken]:
    """One new snapshot version per disk asked for; the instance's node takes them."""
    async with changes.changing(actor, AuditAction.SNAPSHOT, KIND,
                                namespace=record.spec.namespace, object_id=record.uuid,
                                object_name=record.spec.name) as entry:
        taken = await _record(record, all_disks=all_disks, device=device)
        entry.detail = ", ".join(f"{t.device}: {t.artifact_uuid}/{t.blob_uuid}" for t in taken)
    await changes.event(actor, KIND, record.uuid,
                        f"snapshot of {', '.join(t.device for t in taken)} requested",
                        operation=AuditAction.SNAPSHOT, blobs=[t.blob_uuid for t in taken])
    for item in taken:
        await changes.event(actor, ObjectKind.IMAGE, item.artifact_uuid,
                            f"snapshot of {record.spec.name} {item.device} requested",
                            operation=AuditAction.SNAPSHOT, instance=record.uuid,
                            blob=item.blob_uuid)
    return taken


async def _record(record: InstanceRecord, *, all_disks: bool, device: object) -> list[Taken]:
    name = record.spec.name
    if record.state in ("deleting", "deleted"):
        raise Conflict(f"cannot snapshot instance {name}: it is being deleted")
    if record.state == "error":
        raise Conflict(f"cannot snapshot instance {name}: it is in error ({record.error})")
    if record.state != "created":
        raise NotReady(f"instance {name} is not created yet (it is {record.state}); "
                       "try again in a moment")
    devices = devices_for(record, all_disks=all_disks, device=device)
    spec = record.spec
    blobs = {dev: Blob(uuid=str(uuidlib.uuid4()), namespace=spec.namespace, origin="snapshot",
                       node=spec.node, source_url=source_url(spec.uuid, dev),
                       instance_uuid=spec.uuid, device=dev) for dev in devices}

    def plan(found: Catalogue) -> list[artifacts.Planned]:
        return [artifacts.plan_version(
            found, namespace=spec.namespace, type="snapshot", source_url=source_url(spec.uuid, dev),
            name=f"{name}-{dev}", blob=blob, instance_uuid=spec.uuid, device=dev)
            for dev, blob in blobs.items()]

    planned = await artifacts.commit_plans(plan, f"the snapshots of {name}")
    return [Taken(device=dev, artifact_uuid=p.artifact_uuid, blob_uuid=p.blob_uuid,
                  source_url=source_url(spec.uuid, dev))
            for dev, p in zip(blobs, planned, strict=True)]


async def versions_of(record: InstanceRecord) -> list[tuple[ArtifactRecord, Version]]:
    """Every version of every snapshot of the instance (being taken, failed
    or kept), oldest first, as GET /instances/<ref>/snapshot lists them."""
    found = []
    for artifact in await artifacts.list_records(None, type="snapshot",
                                                 instance_uuid=record.uuid):
        for version in artifact.found.kept:
            if version.blob_uuid in artifact.blobs:
                found.append((artifact, version))
    return sorted(found, key=lambda item: (item[0].blobs[item[1].blob_uuid].spec.created_at,
                                           item[0].spec.device or ""))
