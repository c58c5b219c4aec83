"""``cloud.yml``: the one file that says what a deployed cloud is made of.

Every ``sfcloud-deploy`` run reads it again, so editing it and running
``sfcloud-deploy apply`` changes the cloud; ``init``, ``add-node`` and
``remove-node`` edit it for you. It holds no secrets (those are in the
deploy directory's ``secrets/``), so it can be kept in version control.

    name: sfcloud                 # the cloud's name (SFCLOUD_CLUSTER)
    service_manager: systemd      # or none: no init system, start-stop-daemon
    ssh: {user: root, key: /root/.ssh/id_ed25519, known_hosts: /root/.ssh/known_hosts}
    source: /opt/sfcloud-src      # the sfcloud checkout releases are built from
    database: sqlite              # or postgresql: needed for several portals
    scheduler: spread             # or pack
    portal: {port: 13000, agents_port: 13002, allowed_hosts: [], origins: []}
    backups: {keep: 5}
    demo_image: null              # a qcow2 registered as `demo` (default: built)
    settings: {}                  # more SFCLOUD_ settings for every node
    nodes:
      h1: {address: 10.0.0.11, etcd: true, portal: true, network_node: true}
      h2: {address: 10.0.0.12, etcd: true}

A node's ``address`` is where the deploy reaches it over SSH and its address
on the network between the nodes (VXLAN, etcd, the agents' servers).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cloudstate.settings import BY_NAME, PREFIX

CONFIG_FILE = "cloud.yml"
SERVICE_MANAGERS = ("systemd", "none")
DATABASES = ("sqlite", "postgresql")
SCHEDULERS = ("spread", "pack")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
# Settings the deploy writes itself: giving them under `settings:` would
# fight it (and some, like the etcd endpoints, change as nodes come and go).
_MANAGED = {
    "SFCLOUD_STATE_DIR", "SFCLOUD_PKI_DIR", "SFCLOUD_ETCD_ENDPOINTS", "SFCLOUD_CLUSTER",
    "SFCLOUD_NODE_NAME", "SFCLOUD_NODE_IP", "SFCLOUD_PORTAL_URL", "SFCLOUD_NETWORK_NODE",
    "SFCLOUD_PORTAL_HOST", "SFCLOUD_PORTAL_PORT", "SFCLOUD_PORTAL_ADDRESS",
    "SFCLOUD_PORTAL_AGENTS_ADDRESS", "SFCLOUD_PORTAL_ORIGINS", "SFCLOUD_ALLOWED_HOSTS",
    "SFCLOUD_CLUSTER_SECRET", "SFCLOUD_SECRET_KEY", "SFCLOUD_DATABASE_URL",
    "SFCLOUD_REDIS_URL", "SFCLOUD_ADMIN_PASSWORD", "SFCLOUD_SYSTEM_KEY", "SFCLOUD_SCHEDULER",
}


class ConfigError(Exception):
    """cloud.yml says something impossible; the message names it."""


@dataclass(frozen=True)
class NodeConfig:
    name: str
    address: str
    etcd: bool = False
    portal: bool = False
    network_node: bool = False

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"address": self.address}
        for flag in ("etcd", "portal", "network_node"):
            if getattr(self, flag):
                data[flag] = True
        return data


@dataclass(frozen=True)
class SshConfig:
    user: str = "root"
    key: str = "/root/.ssh/id_ed25519"
    known_hosts: str = "/root/.ssh/known_hosts"


@dataclass(frozen=True)
class PortalConfig:
    port: int = 13000
    agents_port: int = 13002
    # Names and origins beyond the portal nodes' own addresses (a proxy's).
    allowed_hosts: tuple[str, ...] = ()
    origins: tuple[str, ...] = ()


@dataclass(frozen=True)
class CloudConfig:
    name: str
    nodes: tuple[NodeConfig, ...]
    service_manager: str = "systemd"
    ssh: SshConfig = field(default_factory=SshConfig)
    source: str = ""
    database: str = "sqlite"
    scheduler: str = "spread"
    portal: PortalConfig = field(default_factory=PortalConfig)
    backups_keep: int = 5
    demo_image: str | None = None
    settings: dict[str, str] = field(default_factory=dict)

    # --- who does what ----------------------------------------------------------

    def node(self, name: str) -> NodeConfig:
        for node in self.nodes:
            if node.name == name:
                return node
        raise ConfigError(f"there is no node {name!r} in {CONFIG_FILE} "
                          f"(nodes: {', '.join(self.names) or 'none'})")

    @property
    def names(self) -> list[str]:
        return [node.name for node in self.nodes]

    @property
    def etcd_nodes(self) -> list[NodeConfig]:
        return [node for node in self.nodes if node.etcd]

    @property
    def portal_nodes(self) -> list[NodeConfig]:
        return [node for node in self.nodes if node.portal]

    @property
    def database_node(self) -> NodeConfig | None:
        """Where PostgreSQL and Redis run: the first portal node."""
        if self.database != "postgresql" or not self.portal_nodes:
            return None
        return self.portal_nodes[0]

    @property
    def network_node(self) -> NodeConfig:
        return next(node for node in self.nodes if node.network_node)

    # --- changes ------------------------------------------------------------------

    def with_node(self, node: NodeConfig) -> CloudConfig:
        if node.name in self.names:
            raise ConfigError(f"there is already a node named {node.name!r}")
        return dataclasses.replace(self, nodes=(*self.nodes, node)).validated()

    def without_node(self, name: str) -> CloudConfig:
        self.node(name)
        return dataclasses.replace(
            self, nodes=tuple(n for n in self.nodes if n.name != name)).validated()

    # --- checks -------------------------------------------------------------------

    def validated(self) -> CloudConfig:
        if not _NAME.fullmatch(self.name):
            raise ConfigError(f"name: {self.name!r} is not a valid cloud name (letters, "
                              "digits, '.', '_', '-')")
        _one_of("service_manager", self.service_manager, SERVICE_MANAGERS)
        _one_of("database", self.database, DATABASES)
        _one_of("scheduler", self.scheduler, SCHEDULERS)
        if not self.nodes:
            raise ConfigError("nodes: a cloud has at least one node")
        seen_addresses: dict[str, str] = {}
        for node in self.nodes:
            if not _NAME.fullmatch(node.name):
                raise ConfigError(f"nodes: {node.name!r} is not a valid host name")
            if node.address in seen_addresses:
                raise ConfigError(f"nodes: {node.name} and {seen_addresses[node.address]} "
                                  f"have the same address {node.address}")
            seen_addresses[node.address] = node.name
        if len({n.name for n in self.nodes}) != len(self.nodes):
            raise ConfigError("nodes: two nodes have the same name")
        if not self.etcd_nodes:
            raise ConfigError("nodes: at least one node must be an etcd member (etcd: true)")
        if not self.portal_nodes:
            raise ConfigError("nodes: at least one node must run the portal (portal: true)")
        if len(self.portal_nodes) > 1 and self.database != "postgresql":
            raise ConfigError(
                "several portals share one database: set `database: postgresql` (at init: "
                "`sfcloud-deploy init --database postgresql`); a cloud already on SQLite "
                "keeps one portal")
        network = [n.name for n in self.nodes if n.network_node]
        if len(network) != 1:
            raise ConfigError(f"nodes: exactly one node is the network node "
                              f"(network_node: true), not {len(network)}")
        for name in self.settings:
            if name in _MANAGED:
                raise ConfigError(f"settings: {name} is written by sfcloud-deploy itself")
            if not name.startswith(PREFIX) or name.removesuffix("_FILE") not in BY_NAME:
                raise ConfigError(f"settings: {name} is not an sfcloud setting (README.md, "
                                  "Settings)")
        if self.backups_keep < 1:
            raise ConfigError("backups: keep must be 1 or more")
        return self

    # --- the file ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "service_manager": self.service_manager,
            "ssh": dataclasses.asdict(self.ssh),
            "source": self.source,
            "database": self.database,
            "scheduler": self.scheduler,
            "portal": {"port": self.portal.port, "agents_port": self.portal.agents_port,
                       "allowed_hosts": list(self.portal.allowed_hosts),
                       "origins": list(self.portal.origins)},
            "backups": {"keep": self.backups_keep},
            "demo_image": self.demo_image,
            "settings": dict(self.settings),
            "nodes": {node.name: node.to_dict() for node in self.nodes},
        }
        return data


def _one_of(what: str, value: str, allowed: Iterable[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{what}: {value!r} is not one of {', '.join(allowed)}")


def _address(name: str, value: Any) -> str:
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        raise ConfigError(f"nodes: {name}: address {value!r} is not an IP address") from None


def _mapping(what: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{what}: must be a mapping of keys to values")
    return value


def _flag(what: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{what}: must be true or false, not {value!r}")
    return value


def _port(what: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
        raise ConfigError(f"{what}: {value!r} is not a TCP port")
    return value


def _count(what: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{what}: {value!r} is not a whole number")
    return value


def from_dict(data: Any) -> CloudConfig:
    top = _mapping(CONFIG_FILE, data)
    known = {"name", "service_manager", "ssh", "source", "database", "scheduler", "portal",
             "backups", "demo_image", "settings", "nodes"}
    unknown = sorted(set(top) - known)
    if unknown:
        raise ConfigError(f"{CONFIG_FILE}: unknown keys {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(known))})")
    nodes = []
    for name, raw in _mapping("nodes", top.get("nodes")).items():
        spec = _mapping(f"nodes: {name}", raw)
        extra = sorted(set(spec) - {"address", "etcd", "portal", "network_node"})
        if extra:
            raise ConfigError(f"nodes: {name}: unknown keys {', '.join(extra)}")
        nodes.append(NodeConfig(
            name=str(name), address=_address(str(name), spec.get("address")),
            etcd=_flag(f"nodes: {name}: etcd", spec.get("etcd", False)),
            portal=_flag(f"nodes: {name}: portal", spec.get("portal", False)),
            network_node=_flag(f"nodes: {name}: network_node",
                               spec.get("network_node", False))))
    ssh = _mapping("ssh", top.get("ssh"))
    portal = _mapping("portal", top.get("portal"))
    settings = _mapping("settings", top.get("settings"))
    return CloudConfig(
        name=str(top.get("name", "sfcloud")),
        nodes=tuple(nodes),
        service_manager=str(top.get("service_manager", "systemd")),
        ssh=SshConfig(**{k: str(v) for k, v in ssh.items()
                         if k in {f.name for f in dataclasses.fields(SshConfig)}}),
        source=str(top.get("source") or ""),
        database=str(top.get("database", "sqlite")),
        scheduler=str(top.get("scheduler", "spread")),
        portal=PortalConfig(
            port=_port("portal: port", portal.get("port", 13000)),
            agents_port=_port("portal: agents_port", portal.get("agents_port", 13002)),
            allowed_hosts=tuple(str(h) for h in portal.get("allowed_hosts") or ()),
            origins=tuple(str(o) for o in portal.get("origins") or ())),
        backups_keep=_count("backups: keep",
                            _mapping("backups", top.get("backups")).get("keep", 5)),
        demo_image=top.get("demo_image") or None,
        settings={str(k): str(v) for k, v in settings.items()},
    ).validated()


def load(directory: Path) -> CloudConfig:
    path = directory / CONFIG_FILE
    if not path.exists():
        raise ConfigError(f"{path} does not exist: start with `sfcloud-deploy init`")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    try:
        return from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


HEADER = """\
# sfcloud-deploy reads this file at every run: edit it, then `sfcloud-deploy apply`.
# `init`, `add-node` and `remove-node` edit it for you. No secrets here (see secrets/).
"""


def save(directory: Path, config: CloudConfig) -> None:
    path = directory / CONFIG_FILE
    text = HEADER + yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=False)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
