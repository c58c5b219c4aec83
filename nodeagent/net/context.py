"""What the network code knows about this node, fixed for the agent's life.

The agent makes one from its settings; every part of ``nodeagent.net``
reads it and none changes it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from nodeagent.net.names import NetNames


@dataclass(frozen=True)
class NetworkContext:
    node: str
    node_ip: str
    names: NetNames
    vxlan_port: int
    networks_dir: Path
    wants_network_node: bool
    uplink: str = ""
    libvirt_netns: str = ""
    floating: ipaddress.IPv4Network | None = None
    floating_router: str | None = None
    dns_servers: tuple[str, ...] = ()
    # A simulated node (nodeagent.simulated) touches no kernel networking:
    # its guests' NICs are described to libvirt and plugged into nothing.
    simulated: bool = False

    def network_dir(self, vxid: int) -> Path:
        """Where the network node keeps a network's dnsmasq files."""
        return self.networks_dir / f"{vxid:06x}"


def vxid_of_dir(directory: Path) -> int | None:
    """The VXLAN id a network_dir() is named for; None for anything else."""
    try:
        return int(directory.name, 16) if len(directory.name) == 6 else None
    except ValueError:
        return None
