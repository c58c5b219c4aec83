"""Simulated node agents for a test cloud: the real agent over libvirt's test
driver (nodeagent.simulated), one process each, with no guest, no kernel
networking and sparse disks. For the scale harness (bench/scale.py) and the
browser test of the instance list with thousands of instances."""

from __future__ import annotations

import subprocess
import sys
import time

from cloudstate.etcd import EtcdUnavailable
from deploy.localvirt import stop_process
from tests.support.cloud import REPO_ROOT, Cloud
from tests.support.pki import issue_agent

# The environment of a simulated cloud: its portal places only on simulated
# nodes, its agents drive the test driver.
SIMULATED_ENV = {
    "SFCLOUD_SIMULATED_HYPERVISOR": "yes",
    "SFCLOUD_LIBVIRT_URI": "test:///default",
    "SFCLOUD_NETWORK_NODE": "no",
    # Usage sampling is per node and does not depend on the cloud's size; at
    # a hundred agents on two cores it would only add noise.
    "SFCLOUD_USAGE_INTERVAL": "0",
    "SFCLOUD_LOG_LEVEL": "WARNING",
}


def node_name(index: int) -> str:
    return f"sim-{index:03d}"


def alive(cloud: Cloud) -> list[str]:
    """The nodes whose agents hold their lease (none known while etcd is too
    busy to answer: a hundred agents starting at once keep it busy)."""
    try:
        kvs, _ = cloud.etcd_call(lambda etcd: etcd.get_prefix(cloud.keys.alive))
    except EtcdUnavailable:
        return []
    return [kv.key.rsplit("/", 1)[-1] for kv in kvs]


def start_agents(cloud: Cloud, count: int, *, batch: int = 10, timeout: float = 600
                 ) -> dict[str, subprocess.Popen[bytes]]:
    """``count`` simulated agents (sim-000...), started ``batch`` at a time
    (each batch registered before the next starts), once all have
    registered. On failure, those started are stopped again."""
    agents: dict[str, subprocess.Popen[bytes]] = {}
    deadline = time.monotonic() + timeout
    try:
        for first in range(0, count, batch):
            for index in range(first, min(first + batch, count)):
                agents[node_name(index)] = _start_agent(cloud, node_name(index))
            while len(alive(cloud)) < len(agents):
                for name, process in agents.items():
                    if process.poll() is not None:
                        log_text = cloud.log_text(f"agent-{name}")[-3000:]
                        raise RuntimeError(f"agent {name} exited:\n{log_text}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {len(alive(cloud))} of {count} agents registered")
                time.sleep(0.5)
    except BaseException:
        for process in agents.values():
            stop_process(process)
        raise
    return agents


def _start_agent(cloud: Cloud, name: str) -> subprocess.Popen[bytes]:
    issue_agent(cloud.pki_dir, name)
    env = {**cloud.env, "SFCLOUD_NODE_NAME": name}
    with open(cloud.state_dir / f"agent-{name}.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "nodeagent"], env=env, stdout=log,
                                stderr=subprocess.STDOUT, cwd=REPO_ROOT)
