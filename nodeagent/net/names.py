"""Names of every kernel object the network code makes.

Each cloud gets a short tag derived from its cluster name ("sf" and four hex
digits), and every link and namespace it makes starts with it, so several
clouds (and anything else) can share a machine: the agent only ever removes
objects that carry its own tag. Linux link names are at most 15 bytes, which
is why the names are terse:

    <tag>b<vxid>      a network's bridge on a node
    <tag>v<vxid>      its VXLAN interface, enslaved to the bridge
    <tag>o<vxid>      the network node's veth from the bridge into the namespace
    <tag>e<vxid>      the network node's veth from the uplink bridge into the namespace
    <tag>up           the network node's uplink bridge
    <tag>t<8 hex>     a guest's tap (the first 8 hex digits of its interface's uuid)
    <tag>-<node>-<vxid>  the network node's namespace for a network
    <tag>_sg          the security groups' nftables tables on every node

(<vxid> is six hex digits, <node> four hex digits derived from the node's
name: namespace names are shared by everything on a host, and a node only
ever removes its own.) Inside a network's namespace, which only we use,
the names are fixed: ``int0`` faces the guests, ``eg0`` the uplink.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

INSIDE = "int0"
EGRESS = "eg0"
_KINDS = {"b": "bridge", "v": "vxlan", "o": "veth", "e": "egress"}


def tag_for(cluster: str) -> str:
    return "sf" + hashlib.sha256(cluster.encode()).hexdigest()[:4]


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:4]


@dataclass(frozen=True)
class NetNames:
    tag: str
    node: str = ""  # four hex digits naming the node, for its namespaces

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9]{1,5}", self.tag):
            raise ValueError(f"network tag {self.tag!r} must be 2-6 lowercase letters or digits")

    @classmethod
    def for_cluster(cls, cluster: str, override: str = "", node: str = "") -> NetNames:
        return cls(override or tag_for(cluster), _short_hash(node) if node else "")

    def bridge(self, vxid: int) -> str:
        return f"{self.tag}b{vxid:06x}"

    def vxlan(self, vxid: int) -> str:
        return f"{self.tag}v{vxid:06x}"

    def veth(self, vxid: int) -> str:
        return f"{self.tag}o{vxid:06x}"

    def egress(self, vxid: int) -> str:
        return f"{self.tag}e{vxid:06x}"

    @property
    def uplink_bridge(self) -> str:
        return f"{self.tag}up"

    def tap(self, interface_uuid: str) -> str:
        return f"{self.tag}t{interface_uuid.replace('-', '')[:8]}"

    def netns(self, vxid: int) -> str:
        return f"{self.netns_prefix}{vxid:06x}"

    @property
    def netns_prefix(self) -> str:
        return f"{self.tag}-{self.node or 'net'}-"

    @property
    def nft_table(self) -> str:
        return f"{self.tag}_net"

    @property
    def filter_table(self) -> str:
        """The security groups' tables (a bridge and an inet one) on each node."""
        return f"{self.tag}_sg"

    def owns(self, name: str) -> bool:
        return name.startswith(self.tag)

    def parse_link(self, name: str) -> tuple[str, int] | None:
        """("bridge" | "vxlan" | "veth" | "egress", vxid) for a per-network
        link of ours, else None (taps, the uplink bridge, anything else)."""
        rest = name[len(self.tag):] if name.startswith(self.tag) else ""
        if len(rest) != 7 or rest[0] not in _KINDS:
            return None
        try:
            return _KINDS[rest[0]], int(rest[1:], 16)
        except ValueError:
            return None

    def parse_netns(self, name: str) -> int | None:
        if not name.startswith(self.netns_prefix):
            return None
        try:
            return int(name[len(self.netns_prefix):], 16)
        except ValueError:
            return None
