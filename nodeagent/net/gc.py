"""Garbage collection: remove every kernel object and dnsmasq of this cloud
that no network wants on this node.

Passes repair the networks etcd knows; this finds what they can't: objects
left by a crash between two steps, by a network whose record is gone, or by
a role this node no longer holds. Only objects carrying this cloud's tag
(``names``) are ever looked at, so other clouds and anything else on the
machine are left alone. The agent runs it at start-up and at every sweep.

A new part that makes kernel objects of its own removes their leftovers
here, from the same ``wanted`` set: the security groups' tables go once no
network is wanted here at all (their ports and chains follow the policy,
which each pass renders whole).

The calls here block; callers run them in a worker thread while holding the
kernel lock.
"""

from __future__ import annotations

from nodeagent.net import dnsmasq, kernel
from nodeagent.net.context import NetworkContext, vxid_of_dir
from nodeagent.net.role import NetworkNodeRole
from nodeagent.net.secgroups import SecurityGroups


class Collector:
    def __init__(self, context: NetworkContext, role: NetworkNodeRole,
                 filtering: SecurityGroups):
        self._ctx = context
        self._role = role
        self._filtering = filtering

    def remove_unwanted(self, wanted: set[int], uplink_wanted: bool) -> list[str]:
        """Remove what no network in ``wanted`` (VXLAN ids) needs here;
        return what was removed, for the log."""
        return [*self._dnsmasqs(wanted), *self._namespaces(wanted), *self._links(wanted),
                *self._uplink(uplink_wanted), *self._filtering.remove_unwanted(bool(wanted))]

    def _dnsmasqs(self, wanted: set[int]) -> list[str]:
        router = self._role.held
        removed = []
        for conf, pid in dnsmasq.find_processes(self._ctx.networks_dir).items():
            vxid = vxid_of_dir(conf.parent)
            if vxid is None or vxid not in wanted or not router:
                dnsmasq.stop(pid, conf)
                removed.append(f"dnsmasq {pid}")
        if self._ctx.networks_dir.exists():
            for directory in self._ctx.networks_dir.iterdir():
                vxid = vxid_of_dir(directory)
                if vxid is not None and (vxid not in wanted or not router):
                    dnsmasq.remove(directory)
        return removed

    def _namespaces(self, wanted: set[int]) -> list[str]:
        names = self._ctx.names
        removed = []
        for namespace in kernel.namespaces(names.netns_prefix):
            vxid = names.parse_netns(namespace)
            if vxid is None or vxid not in wanted or not self._role.held:
                kernel.remove_netns(namespace)
                removed.append(f"namespace {namespace}")
        return removed

    def _links(self, wanted: set[int]) -> list[str]:
        removed = []
        for link in kernel.links():
            parsed = self._ctx.names.parse_link(link)
            if parsed is None:
                continue
            kind, vxid = parsed
            # The veths into a namespace are the network node's alone.
            stale = vxid not in wanted or (kind in ("veth", "egress") and not self._role.held)
            if stale and kernel.delete_link(link):
                removed.append(f"{kind} {link}")
        return removed

    def _uplink(self, uplink_wanted: bool) -> list[str]:
        bridge = self._ctx.names.uplink_bridge
        if not uplink_wanted and kernel.delete_link(bridge):
            return [f"bridge {bridge}"]
        return []
