"""A cloud of simulated nodes on this machine, for measuring scale.

One etcd (TLS, as the cloud runs it), one portal (uvicorn, as ``make run``
starts it) and N node agents, each its own process over libvirt's test
driver (nodeagent.simulated): the real agent, with no guest, no kernel
networking and sparse disks. Everything is removed again on exit.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from support import REPO_ROOT

from cloudstate.etcd import KeyValue
from deploy.localetcd import LocalEtcd
from deploy.localvirt import stop_process
from tests.support.cloud import Cloud
from tests.support.pki import issue_agent

SIMULATED_ENV = {
    "SFCLOUD_SIMULATED_HYPERVISOR": "yes",
    "SFCLOUD_LIBVIRT_URI": "test:///default",
    "SFCLOUD_NETWORK_NODE": "no",
    # Usage sampling is per node and does not depend on the cloud's size; at
    # a hundred agents on two cores it would only add noise.
    "SFCLOUD_USAGE_INTERVAL": "0",
    "SFCLOUD_LOG_LEVEL": "WARNING",
}
# The portal's /metrics tells how long each placement took.
METRICS_TOKEN = secrets.token_urlsafe(24)


def node_name(index: int) -> str:
    return f"sim-{index:03d}"


@dataclass
class SimulatedFleet:
    cloud: Cloud
    etcd: LocalEtcd
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start_agents(self, count: int, timeout: float = 300) -> None:
        for index in range(count):
            name = node_name(index)
            issue_agent(self.cloud.pki_dir, name)
            env = {**self.cloud.env, "SFCLOUD_NODE_NAME": name}
            with open(self.cloud.state_dir / f"agent-{name}.log", "ab") as log:
                self.agents[name] = subprocess.Popen(
                    [sys.executable, "-m", "nodeagent"], env=env, stdout=log,
                    stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        deadline = time.monotonic() + timeout
        while len(self.alive()) < count:
            for name, process in self.agents.items():
                if process.poll() is not None:
                    log = (self.cloud.state_dir / f"agent-{name}.log").read_text()[-3000:]
                    raise RuntimeError(f"agent {name} exited:\n{log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(self.alive())} of {count} agents registered")
            time.sleep(0.5)

    def alive(self) -> list[str]:
        kvs = self.read(lambda etcd: etcd.get_prefix(self.cloud.keys.alive))[0]
        return [kv.key.rsplit("/", 1)[-1] for kv in kvs]

    def read(self, call):  # type: ignore[no-untyped-def]
        return self.cloud.etcd_call(call)

    def prefix(self, prefix: str) -> list[KeyValue]:
        return self.read(lambda etcd: etcd.get_prefix(prefix))[0]

    def revision(self) -> int:
        return self.read(lambda etcd: etcd.revision())

    def db_size(self) -> int:
        """etcd's database file, in bytes (one member: the one we ask)."""
        return self.read(lambda etcd: etcd.member_status()).db_size

    def rss_mib(self, process: subprocess.Popen[bytes] | None) -> float:
        if process is None:
            return 0.0
        return psutil.Process(process.pid).memory_info().rss / 2**20

    def stop(self) -> None:
        for process in self.agents.values():
            process.terminate()
        for process in self.agents.values():
            stop_process(process)
        self.agents.clear()


@contextmanager
def simulated_cloud(nodes: int) -> Iterator[SimulatedFleet]:
    with tempfile.TemporaryDirectory(prefix="sfcloud-scale-") as tmp:
        etcd = LocalEtcd.standalone(Path(tmp) / "data", name="scale")
        etcd.start()
        cloud = Cloud(etcd, **SIMULATED_ENV, SFCLOUD_METRICS_TOKEN=METRICS_TOKEN)
        fleet = SimulatedFleet(cloud=cloud, etcd=etcd)
        try:
            cloud.prepare()
            cloud.start_portal()
            fleet.start_agents(nodes)
            yield fleet
        finally:
            fleet.stop()
            cloud.stop()
            etcd.stop()
