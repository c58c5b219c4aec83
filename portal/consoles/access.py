"""Who may open which console, shared by the ticket view and the websocket."""

from __future__ import annotations

from channels.db import database_sync_to_async

from portal.accounts.access import Access
from portal.accounts.models import Membership
from portal.cloud import instances
from portal.cloud.errors import NotFound


@database_sync_to_async
def _memberships(user_id: int) -> dict[str, str]:
    return dict(Membership.objects.filter(user_id=user_id)
                .values_list("namespace__name", "role"))


async def access_of(user_id: int) -> Access:
    return Access(memberships=await _memberships(user_id), current=None)


async def console_target(access: Access, uuid: str) -> tuple[instances.InstanceRecord, bool]:
    """The instance if this person may see it, and whether read-only (the
    viewer role): NotFound otherwise, as for anything else they can't see."""
    record = await instances.get(uuid, access.visible)
    if record.spec.desired == "deleted":
        raise NotFound(f"instance {uuid} not found")
    return record, not access.can_operate(record.spec.namespace)
