"""Telling a person's open websockets that what they may see has changed
(a membership, a role, their account), so they re-check at once instead of
going on delivering what the person may no longer see."""

from __future__ import annotations

from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

ACCESS_CHANGED = "access.changed"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


async def access_changed(user_ids: Iterable[int]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    for user_id in set(user_ids):
        await layer.group_send(user_group(user_id), {"type": ACCESS_CHANGED})


def access_changed_now(user_ids: Iterable[int]) -> None:
    """For synchronous code."""
    async_to_sync(access_changed)(list(user_ids))
