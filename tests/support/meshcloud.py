"""A cloud of several simulated hypervisors on one machine.

The portal runs in the root namespace; each node agent runs inside one of a
``Mesh``'s host namespaces (entered with nsenter, which changes only the
network namespace), with its own node name and an address on the mesh, so
VXLAN between nodes really leaves one namespace for another. libvirtd stays
in the root namespace and makes guests' taps there; each agent moves its
guests' taps into its own namespace (SFCLOUD_LIBVIRT_NETNS). The first host
is the network node.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from cloudstate.config import REPO_ROOT
from deploy.localetcd import LocalEtcd
from nodeagent.net.names import NetNames
from tests.support.cloud import Cloud, wait_for
from tests.support.networld import Mesh
from tests.support.pki import issue_agent


def libvirtd_netns() -> str:
    """The network namespace of the libvirtd the agents talk to: the one
    in our mount namespace (whose /run/libvirt socket qemu:///system
    reaches). Other work on this machine may run libvirtds of its own in
    other namespaces; a tap looked for in theirs is never found."""
    ours = Path("/proc/self/ns/mnt").readlink()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if ((entry / "comm").read_text().strip() == "libvirtd"
                        and (entry / "ns" / "mnt").readlink() == ours):
                    return str(entry / "ns" / "net")
            except OSError:
                continue
    raise RuntimeError("libvirtd is not running in this mount namespace")


class MeshCloud(Cloud):
    def __init__(self, etcd: LocalEtcd, mesh: Mesh, demo_image: Path | None = None,
                 **extra_env: str):
        super().__init__(etcd, demo_image=demo_image, **extra_env)
        self.mesh = mesh
        self.nodes = [f"{self.node}-{index}" for index in range(len(mesh.hosts))]
        self.agents: dict[str, subprocess.Popen[bytes]] = {}
        # The network node's names: its namespaces carry its node's hash.
        self.net_names = NetNames.for_cluster(self.cluster, node=self.nodes[0])

    def issue_certificates(self) -> None:
        """Each node's agent certificate, naming its address on the mesh
        (where the portal and the other agents reach its server)."""
        for node, host in zip(self.nodes, self.mesh.hosts, strict=True):
            issue_agent(self.pki_dir, node, host.address)

    def start_agent(self, failpoints: str = "", wait: bool = True) -> subprocess.Popen[bytes]:
        for node in self.nodes:
            self._start_node(node, failpoints)
        self.agent = self.agents[self.nodes[0]]
        if wait:
            wait_for(self.node_alive, 60, "every node agent to register")
        return self.agent

    def _start_node(self, node: str, failpoints: str = "") -> None:
        index = self.nodes.index(node)
        host = self.mesh.hosts[index]
        env = {**self.env, "SFCLOUD_FAILPOINTS": failpoints, "SFCLOUD_NODE_NAME": node,
               "SFCLOUD_NODE_IP": host.address, "SFCLOUD_LIBVIRT_NETNS": libvirtd_netns(),
               "SFCLOUD_NETWORK_NODE": "yes" if index == 0 else "no"}
        with open(self._log(f"agent-{node}"), "ab") as log:
            self.agents[node] = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{host.name}", sys.executable, "-m", "nodeagent"],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
            )

    def restart_node(self, node: str, *, kill: bool = True,
                     meanwhile: Callable[[], None] | None = None) -> None:
        """Stop one node's agent (SIGKILL: it gets no chance to tidy up), do
        ``meanwhile``, and start it again."""
        process = self.agents[node]
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        process.wait(timeout=20)
        if meanwhile is not None:
            meanwhile()
        self._start_node(node)

    def node_alive(self) -> bool:
        alive = {key.rsplit("/", 1)[-1] for key in self.etcd_keys("alive/")}
        return set(self.nodes) <= alive

    def stop(self) -> None:
        for process in self.agents.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.agents.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.agent = None
        super().stop()

    def host_of(self, node: str) -> str:
        return self.mesh.hosts[self.nodes.index(node)].name

    def instance_dir(self, uuid: str) -> Path:
        for node in self.nodes:
            path = self.state_dir / "node" / node / "instances" / uuid
            if path.exists():
                return path
        return self.state_dir / "node" / self.nodes[0] / "instances" / uuid
