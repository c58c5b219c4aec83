"""Settings shared by every sfcloud process, read from the environment.

Every knob has a default that suits the all-in-one install, so a fresh
``make run`` needs none of them set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ETCD = "http://127.0.0.1:23790"


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def _env_int(name: str, default: int) -> int:
    return int(_env(name, str(default)))


def _env_float(name: str, default: float) -> float:
    return float(_env(name, str(default)))


def parse_endpoints(text: str) -> list[tuple[str, int]]:
    """Turn ``http://a:2379,b:2379`` into ``[("a", 2379), ("b", 2379)]``."""
    endpoints = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if "://" in item:
            item = item.split("://", 1)[1]
        item = item.rstrip("/")
        host, _, port = item.rpartition(":")
        if not host:
            host, port = port, "2379"
        endpoints.append((host.strip("[]"), int(port)))
    if not endpoints:
        raise ValueError("no etcd endpoints given")
    return endpoints


@dataclass(frozen=True)
class Settings:
    etcd_endpoints: list[tuple[str, int]] = field(
        default_factory=lambda: parse_endpoints(_env("SFCLOUD_ETCD_ENDPOINTS", DEFAULT_ETCD))
    )
    # All keys live under this prefix, so one etcd can serve several clouds
    # (the tests use that to stay out of each other's way).
    etcd_prefix: str = field(default_factory=lambda: _env("SFCLOUD_ETCD_PREFIX", "/sfcloud"))
    # A name for this cloud; the agent only ever touches libvirt domains
    # that carry it, so several clouds can share one libvirtd.
    cluster: str = field(default_factory=lambda: _env("SFCLOUD_CLUSTER", "sfcloud"))
    state_dir: Path = field(
        default_factory=lambda: Path(_env("SFCLOUD_STATE_DIR", str(REPO_ROOT / "var"))).resolve()
    )
    node_lease_ttl: int = field(default_factory=lambda: _env_int("SFCLOUD_NODE_LEASE_TTL", 10))
    resync_interval: float = field(
        default_factory=lambda: _env_float("SFCLOUD_RESYNC_INTERVAL", 300.0)
    )
    # Networks. The floating pool is where NAT egress addresses and floating
    # IPs come from; with none set there is no egress at all.
    floating_network: str = field(default_factory=lambda: _env("SFCLOUD_FLOATING_NETWORK", ""))
    # The upstream router on the floating network (default: its first host).
    floating_router: str = field(default_factory=lambda: _env("SFCLOUD_FLOATING_ROUTER", ""))
    # The MTU guests get; the mesh between nodes must carry 50 bytes more
    # (VXLAN's headers).
    network_mtu: int = field(default_factory=lambda: _env_int("SFCLOUD_NETWORK_MTU", 1450))
    vxlan_port: int = field(default_factory=lambda: _env_int("SFCLOUD_VXLAN_PORT", 4789))

    @classmethod
    def from_env(cls) -> Settings:
        return cls()
