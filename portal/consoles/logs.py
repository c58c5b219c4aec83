"""An instance's serial console log, which the node agent keeps: read the
last N bytes of it, or clear it (a change: audited, for a member or admin)."""

from __future__ import annotations

from cloudstate.consoles import consolelog_path
from cloudstate.vocabulary import ObjectKind
from portal.accounts.actor import Actor
from portal.accounts.models import AuditAction
from portal.cloud import changes
from portal.cloud.changes import Later, given
from portal.cloud.errors import NotFound
from portal.cloud.instances import InstanceRecord
from portal.consoles import agent


def _route(record: InstanceRecord, ref: str) -> str:
    if record.spec.desired == "deleted":
        raise NotFound(f"instance {ref} is deleted; its console log went with it")
    return consolelog_path(record.uuid)


async def read(record: InstanceRecord, length: int | str | Later[int | str], *,
               ref: str) -> bytes:
    """The log's last ``length`` bytes (WHOLE_LOG: all of it, even what
    virtlogd rotated); ``ref`` is how the caller named the instance."""
    route = _route(record, ref)
    wanted = given(length)
    if isinstance(wanted, int) and wanted == 0:
        return b""
    return await agent.request(record.spec.node, "GET", route, params={"length": str(wanted)})


async def clear(actor: Actor, record: InstanceRecord, *, ref: str) -> None:
    route = _route(record, ref)
    async with changes.changing(actor, AuditAction.CLEAR_LOG, ObjectKind.INSTANCE,
                                namespace=record.spec.namespace, object_id=record.uuid,
                                object_name=record.spec.name, what=f"instance {ref}"):
        await agent.request(record.spec.node, "DELETE", route)
