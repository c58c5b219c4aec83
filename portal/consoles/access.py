"""Who may open which console, shared by the ticket view and the websocket."""

from __future__ import annotations

from portal.accounts.roles import RoleChecks
from portal.cloud import instances
from portal.cloud.errors import NotFound


async def console_target(access: RoleChecks, uuid: str) -> tuple[instances.InstanceRecord, bool]:
    """The instance if this person may see it, and whether their console is
    read-only (the viewer role); NotFound otherwise, as for anything else they
    can't see."""
    record = await instances.get(uuid, access.visible)
    if record.spec.desired == "deleted":
        raise NotFound(f"instance {uuid} not found")
    return record, not access.can_operate(record.spec.namespace)
