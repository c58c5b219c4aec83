"""The node agent's own settings (on top of cloudstate.config.Settings).

Each variable is declared, with its kind, default and help, in
``cloudstate.settings``; a bad value stops the agent at start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cloudstate import tls
from cloudstate.config import Settings
from cloudstate.settings import setting


@dataclass(frozen=True)
class AgentSettings:
    common: Settings = field(default_factory=Settings.from_env)
    node_name: str = setting("SFCLOUD_NODE_NAME")
    # The address other nodes reach this one at (VXLAN, console relay).
    node_ip: str = setting("SFCLOUD_NODE_IP")
    libvirt_uri: str = setting("SFCLOUD_LIBVIRT_URI")
    virt_type: str = setting("SFCLOUD_VIRT_TYPE")
    machine: str = setting("SFCLOUD_MACHINE")
    # An operator may replace the domain XML template with their own.
    domain_template: Path | None = setting("SFCLOUD_DOMAIN_TEMPLATE")
    workers: int = setting("SFCLOUD_AGENT_WORKERS")
    # Where the portal is, for sending it events: SFCLOUD_PORTAL_URL, else
    # the address the portal of an all-in-one install listens on.
    portal_url: str = setting("SFCLOUD_PORTAL_URL")
    # Networks. The network node holds each network's namespace, router,
    # dnsmasq and NAT; one node takes the role (the first to claim it).
    network_node: bool = setting("SFCLOUD_NETWORK_NODE")
    # A dedicated interface towards the floating network, for NAT egress and
    # floating addresses; none: no egress. Never the node's own uplink.
    uplink: str = setting("SFCLOUD_UPLINK")
    # Resolvers beyond the cloud (IPv4 addresses, reached through the
    # uplink): a network's dnsmasq forwards what is not an instance name to
    # them; a network without DNS of its own hands them out.
    dns_servers: tuple[str, ...] = setting("SFCLOUD_DNS_SERVERS")
    # Where libvirtd makes guests' taps when it runs in another network
    # namespace than this agent (a path such as /proc/<pid>/ns/net).
    libvirt_netns: str = setting("SFCLOUD_LIBVIRT_NETNS")
    # The prefix of every link and namespace this cloud makes (default:
    # derived from SFCLOUD_CLUSTER).
    net_tag: str = setting("SFCLOUD_NET_TAG")
    # The agent's authenticated server (console relays, console logs) listens
    # on node_ip at this port; 0 picks a free one (the node record says which).
    agent_port: int = setting("SFCLOUD_AGENT_PORT")
    # Seconds between usage samples (graphs, /metrics); 0: no sampling.
    usage_interval: int = setting("SFCLOUD_USAGE_INTERVAL")
    # The unprivileged user qemu-img runs as on downloaded bytes.
    image_check_user: str = setting("SFCLOUD_IMAGE_CHECK_USER")
    # The only directories a file:// blob (an image an operator registered,
    # such as the demo image) may be read from.
    file_image_dirs: tuple[Path, ...] = setting("SFCLOUD_FILE_IMAGE_DIRS")

    @property
    def credentials(self) -> tls.Credentials:
        """This node's certificate: etcd client, its server, its events client."""
        return tls.agent(self.common.pki_dir, self.node_name)

    @property
    def node_dir(self) -> Path:
        return self.common.state_dir / "node" / self.node_name

    @property
    def instances_dir(self) -> Path:
        return self.node_dir / "instances"

    @property
    def images_dir(self) -> Path:
        """qcow2 images made from blobs, which guests' disks are overlays on."""
        return self.node_dir / "images"

    @property
    def blobs_dir(self) -> Path:
        return self.node_dir / "blobs"

    @property
    def uploads_dir(self) -> Path:
        return self.node_dir / "uploads"

    @property
    def event_spool_dir(self) -> Path:
        return self.node_dir / "event-spool"

    @property
    def networks_dir(self) -> Path:
        return self.node_dir / "networks"

    @property
    def usage_dir(self) -> Path:
        return self.node_dir / "usage"
