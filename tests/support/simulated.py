"""Simulated node agents for a test cloud: the real agent over libvirt's test
driver (nodeagent.simulated), one process each, with no guest, no kernel
networking and sparse disks. For the scale harness (bench/scale.py) and the
browser test of the instance list with thousands of instances."""

from __future__ import annotations

import subprocess
import sys
import time

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
    kvs, _ = cloud.etcd_call(lambda etcd: etcd.get_prefix(cloud.keys.alive))
    return [kv.key.rsplit("/", 1)[-1] for kv in kvs]


def start_agents(cloud: Cloud, count: int, timeout: float = 300
                 ) -> dict[str, subprocess.Popen[bytes]]:
    """``count`` simulated agents (sim-000...), once all have registered."""
    agents = {}
    for index in range(count):
        name = node_name(index)
        issue_agent(cloud.pki_dir, name)
        env = {**cloud.env, "SFCLOUD_NODE_NAME": name}
        with open(cloud.state_dir / f"agent-{name}.log", "ab") as log:
            agents[name] = subprocess.Popen([sys.executable, "-m", "nodeagent"], env=env,
                                            stdout=log, stderr=subprocess.STDOUT,
                                            cwd=REPO_ROOT)
    deadline = time.monotonic() + timeout
    while len(alive(cloud)) < count:
        for name, process in agents.items():
            if process.poll() is not None:
                log_text = cloud.log_text(f"agent-{name}")[-3000:]
                raise RuntimeError(f"agent {name} exited:\n{log_text}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(alive(cloud))} of {count} agents registered")
        time.sleep(0.5)
    return agents
