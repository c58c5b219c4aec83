"""A cloud of simulated nodes on this machine, for measuring scale.

One etcd (TLS, as the cloud runs it), one portal (uvicorn, as ``make run``
starts it) and N node agents, each its own process over libvirt's test
driver (nodeagent.simulated): the real agent, with no guest, no kernel
networking and sparse disks. Everything is removed again on exit.
"""

from __future__ import annotations

import secrets
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import support  # noqa: F401 - puts this checkout first on sys.path

from cloudstate.etcd import KeyValue
from deploy.localetcd import LocalEtcd
from deploy.localvirt import stop_process
from tests.support import simulated
from tests.support.cloud import Cloud
from tests.support.simulated import SIMULATED_ENV

# The portal's /metrics tells how long each placement took.
METRICS_TOKEN = secrets.token_urlsafe(24)


@dataclass
class SimulatedFleet:
    cloud: Cloud
    etcd: LocalEtcd
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start_agents(self, count: int) -> None:
        self.agents = simulated.start_agents(self.cloud, count)

    def alive(self) -> list[str]:
        return simulated.alive(self.cloud)

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
