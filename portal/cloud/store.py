"""The portal's handle on etcd: one client per event loop, and the key layout.

grpc.aio channels belong to the loop that made them. The ASGI server runs one
loop, but management commands and tests may run several in turn, so clients
are kept per loop rather than per process.
"""

from __future__ import annotations

import asyncio
import weakref

from django.conf import settings

from cloudstate.etcd import Compare, Delete, Etcd
from cloudstate.keys import Keys

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Etcd] = (
    weakref.WeakKeyDictionary()
)


def etcd() -> Etcd:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = _clients[loop] = Etcd(settings.CLOUD.etcd_endpoints)
    return client


def keys() -> Keys:
    return Keys(settings.CLOUD.etcd_prefix)


async def forget(spec_key: str, observed_key: str, revision: int) -> bool:
    """Remove an object's desired and observed records for good, fenced on
    the revision it was judged at: several portal processes may try at once,
    and only one transaction succeeds."""
    result = await etcd().txn([Compare.unchanged_since(spec_key, revision)],
                              [Delete(spec_key), Delete(observed_key)])
    return result.succeeded
