"""The node agent's own settings (on top of cloudstate.config.Settings)."""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from cloudstate.config import Settings


def parse_dns_servers(text: str) -> tuple[str, ...]:
    """``"192.0.2.53, 198.51.100.53"`` -> the addresses; a typo stops the agent
    at start rather than leaving guests without names."""
    servers = []
    for item in text.split(","):
        if item := item.strip():
            try:
                servers.append(str(ipaddress.IPv4Address(item)))
            except ValueError:
                raise ValueError(f"SFCLOUD_DNS_SERVERS: {item!r} is not an IPv4 address") \
                    from None
    return tuple(servers)


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


@dataclass(frozen=True)
class AgentSettings:
    common: Settings = field(default_factory=Settings.from_env)
    node_name: str = field(default_factory=lambda: _env("SFCLOUD_NODE_NAME", socket.gethostname()))
    # The address other nodes reach this one at (VXLAN, console relay).
    node_ip: str = field(default_factory=lambda: _env("SFCLOUD_NODE_IP", "127.0.0.1"))
    libvirt_uri: str = field(default_factory=lambda: _env("SFCLOUD_LIBVIRT_URI", "qemu:///system"))
    virt_type: str = field(default_factory=lambda: _env("SFCLOUD_VIRT_TYPE", "auto"))
    machine: str = field(default_factory=lambda: _env("SFCLOUD_MACHINE", "pc"))
    # An operator may replace the domain XML template with their own.
    domain_template: Path | None = field(
        default_factory=lambda: Path(p) if (p := _env("SFCLOUD_DOMAIN_TEMPLATE", "")) else None
    )
    workers: int = field(default_factory=lambda: int(_env("SFCLOUD_AGENT_WORKERS", "4")))
    # Where the portal is, for sending it events: SFCLOUD_PORTAL_URL, else
    # the address the portal of an all-in-one install listens on.
    portal_url: str = field(default_factory=lambda: _env(
        "SFCLOUD_PORTAL_URL", "http://" + _env("SFCLOUD_PORTAL_ADDRESS", "127.0.0.1:13000")))
    # Networks. The network node holds each network's namespace, router,
    # dnsmasq and NAT; one node takes the role (the first to claim it).
    network_node: bool = field(
        default_factory=lambda: _env("SFCLOUD_NETWORK_NODE", "yes").lower()
        in ("1", "yes", "true", "on")
    )
    # A dedicated interface towards the floating network, for NAT egress and
    # floating addresses; none: no egress. Never the node's own uplink.
    uplink: str = field(default_factory=lambda: _env("SFCLOUD_UPLINK", ""))
    # Resolvers beyond the cloud (comma-separated IPv4 addresses, reached
    # through the uplink): a network's dnsmasq forwards what is not an
    # instance name to them; a network without DNS of its own hands them out.
    dns_servers: tuple[str, ...] = field(
        default_factory=lambda: parse_dns_servers(_env("SFCLOUD_DNS_SERVERS", "")))
    # Where libvirtd makes guests' taps when it runs in another network
    # namespace than this agent (a path such as /proc/<pid>/ns/net).
    libvirt_netns: str = field(default_factory=lambda: _env("SFCLOUD_LIBVIRT_NETNS", ""))
    # The prefix of every link and namespace this cloud makes (default:
    # derived from SFCLOUD_CLUSTER).
    net_tag: str = field(default_factory=lambda: _env("SFCLOUD_NET_TAG", ""))
    # The agent's authenticated server (console relays, console logs) listens
    # on node_ip at this port; 0 picks a free one (the node record says which).
    agent_port: int = field(default_factory=lambda: int(_env("SFCLOUD_AGENT_PORT", "13001")))

    @property
    def node_dir(self) -> Path:
        return self.common.state_dir / "node" / self.node_name

    @property
    def instances_dir(self) -> Path:
        return self.node_dir / "instances"

    @property
    def images_dir(self) -> Path:
        return self.node_dir / "images"

    @property
    def event_spool_dir(self) -> Path:
        return self.node_dir / "event-spool"

    @property
    def networks_dir(self) -> Path:
        return self.node_dir / "networks"
