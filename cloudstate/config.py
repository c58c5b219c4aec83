"""Settings shared by every sfcloud process.

The variables themselves, their kinds, defaults and help, are declared in
``cloudstate.settings``; this is the part of them both the portal and the
agents use, read when an instance is made (so tests may change the
environment and make another).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cloudstate.settings import REPO_ROOT, read, setting
from cloudstate.settingtypes import parse_endpoints

__all__ = ["REPO_ROOT", "Settings", "parse_endpoints"]


@dataclass(frozen=True)
class Settings:
    etcd_endpoints: list[tuple[str, int]] = setting("SFCLOUD_ETCD_ENDPOINTS")
    # All keys live under this prefix, so one etcd can serve several clouds
    # (the tests use that to stay out of each other's way).
    etcd_prefix: str = setting("SFCLOUD_ETCD_PREFIX")
    # A name for this cloud; the agent only ever touches libvirt domains
    # that carry it, so several clouds can share one libvirtd.
    cluster: str = setting("SFCLOUD_CLUSTER")
    state_dir: Path = field(default_factory=lambda: read("SFCLOUD_STATE_DIR").resolve())
    # The cloud's CA certificate and this machine's certificates (cloudstate.tls).
    pki_dir: Path = field(default_factory=lambda: read("SFCLOUD_PKI_DIR").resolve())
    node_lease_ttl: int = setting("SFCLOUD_NODE_LEASE_TTL")
    resync_interval: float = setting("SFCLOUD_RESYNC_INTERVAL")
    # Networks. The floating pool is where NAT egress addresses and floating
    # IPs come from; with none set there is no egress at all.
    floating_network: str = setting("SFCLOUD_FLOATING_NETWORK")
    # The upstream router on the floating network (default: its first host).
    floating_router: str = setting("SFCLOUD_FLOATING_ROUTER")
    # The MTU guests get; the mesh between nodes must carry 50 bytes more
    # (VXLAN's headers).
    network_mtu: int = setting("SFCLOUD_NETWORK_MTU")
    vxlan_port: int = setting("SFCLOUD_VXLAN_PORT")
    # Measuring scale: agents over libvirt's test driver (nodeagent.simulated),
    # and a portal that places instances only on such nodes.
    simulated_hypervisor: bool = setting("SFCLOUD_SIMULATED_HYPERVISOR")

    @classmethod
    def from_env(cls) -> Settings:
        return cls()
