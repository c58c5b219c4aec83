"""Telling a person's open websockets that what they may see has changed
(a membership, a role, their account), so they re-check at once instead of
going on delivering what the person may no longer see.

Two ways, because a person's sockets may be served by any portal process:
the channel layer reaches this process's sockets (and every process's, with
Redis), and a key in etcd (``Keys.access_change``) reaches every process
through its live hub, which re-checks that person's consoles and closes
their live pages. Without Redis the second is the only way across processes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from cloudstate.etcd import EtcdUnavailable, Put
from portal.cloud import store

log = logging.getLogger(__name__)

ACCESS_CHANGED = "access.changed"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


async def access_changed(user_ids: Iterable[int]) -> None:
    users = sorted(set(user_ids))
    layer = get_channel_layer()
    if layer is not None:
        for user_id in users:
            await layer.group_send(user_group(user_id), {"type": ACCESS_CHANGED})
    await _tell_other_processes(users)


async def _tell_other_processes(user_ids: list[int]) -> None:
    if not user_ids:
        return
    keys, stamp = store.keys(), json.dumps({"at": time.time()}).encode()
    try:
        await store.etcd().txn([], [Put(keys.access_change(user_id), stamp)
                                    for user_id in user_ids])
    except EtcdUnavailable as exc:
        # The change stands; other processes' consoles catch up at their
        # next periodic check.
        log.warning("could not tell other portal processes that the access of %s "
                    "changed: %s", user_ids, exc)


def access_changed_now(user_ids: Iterable[int]) -> None:
    """For synchronous code."""
    async_to_sync(access_changed)(list(user_ids))
