"""Single-use token ids, remembered in etcd until the token expires.

A token an agent opens its events connection with names the node and
expires within minutes, but a signature alone can't stop the same token
being used twice within that time. Each carries an id; the portal spends it
here, in one etcd transaction that succeeds only if the id is new, under a
lease that ends when the token would have expired anyway. etcd is shared by
every portal process, so the second use is refused whichever process sees it.
"""

from __future__ import annotations

import math
import re
import time

from cloudstate.etcd import Compare, Etcd, Put
from cloudstate.keys import Keys

# Token ids are ours (secrets.token_urlsafe): anything else is refused before
# it becomes part of a key.
_TOKEN_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")


async def spend(etcd: Etcd, keys: Keys, purpose: str, token_id: object,
                expires_at: float) -> bool:
    """True if this is the first use of ``token_id`` (now recorded), False if
    it was used before or is not a token id at all."""
    if not isinstance(token_id, str) or not _TOKEN_ID.fullmatch(token_id):
        return False
    ttl = max(1, math.ceil(expires_at - time.time()) + 1)
    lease = await etcd.grant_lease(ttl)
    key = keys.spent_token(purpose, token_id)
    result = await etcd.txn([Compare.absent(key)], [Put(key, b"1", lease=lease)])
    if not result.succeeded:
        await etcd.revoke_lease(lease)
    return result.succeeded
