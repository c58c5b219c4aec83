"""Whether this node is the cloud's network node.

One node of a cloud holds the role: it carries each network's router,
dnsmasq and NAT (``router``, ``egress``). A node configured for it takes the
role in etcd at start-up if no other node holds it, and keeps it across
restarts; the other parts read ``held`` to know which share of a network
is theirs.
"""

from __future__ import annotations

import logging

from cloudstate.etcd import Compare, Etcd, Put
from cloudstate.keys import Keys
from cloudstate.mirror import MirrorView
from nodeagent.net.context import NetworkContext

log = logging.getLogger(__name__)


class NetworkNodeRole:
    def __init__(self, *, context: NetworkContext, keys: Keys, etcd: Etcd, mirror: MirrorView):
        self._ctx = context
        self._keys = keys
        self._etcd = etcd
        self._mirror = mirror
        self.held = False

    async def claim(self) -> bool:
        """Take the role if this node wants it and no other node holds it."""
        if not self._ctx.wants_network_node:
            self.held = False
            return False
        key = self._keys.network_node_role
        result = await self._etcd.txn([Compare.absent(key)], [Put(key, self._ctx.node)])
        if result.succeeded:
            self.held = True
        else:
            holder = await self._etcd.get(key)
            self.held = holder is not None and holder.value.decode() == self._ctx.node
            if not self.held and holder is not None:
                log.error("node %s is configured as the network node, but %s already is; "
                          "running as a hypervisor only (delete %s to move the role)",
                          self._ctx.node, holder.value.decode(), key)
        await self._mirror.wait_for_revision(result.revision, keys=[key])
        return self.held
