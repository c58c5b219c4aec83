"""The invariant checker (cloudstate.audit, nodeagent.check) as tests use
it: the etcd half for a portal in this process or a whole test cloud, the
node half for a test cloud's node, and a wait until both show no drift."""

from __future__ import annotations

import time

from cloudstate.audit import Drift, EtcdState, Limits, audit
from nodeagent.check import NodeSite, check_node, read_host
from tests.support.cloud import Cloud, wait_for
from tests.support.inprocess import InProcessPortal

# Work in flight counts as stuck after this long in tests (a settled test
# cloud has nothing in flight at all).
TEST_SETTLE = 120.0


def portal_drift(portal: InProcessPortal, settle: float = TEST_SETTLE) -> list[Drift]:
    """The etcd half, as the in-process portal's ``check-cloud`` sees it."""
    from portal.cloud import audit as portal_audit

    return portal.loop.run(portal_audit.check(settle))


def cloud_state(cloud: Cloud, settle: float = TEST_SETTLE) -> EtcdState:
    """A test cloud's etcd, read at one revision (the scheduler's default
    limits: test clouds set none)."""
    return cloud.etcd_call(lambda etcd: EtcdState.read(
        etcd, cloud.keys, now=time.time(), settle=settle, limits=Limits()))


def site_of(cloud: Cloud) -> NodeSite:
    node_dir = cloud.state_dir / "node" / cloud.node
    return NodeSite(node=cloud.node, owner=cloud.owner, names=cloud.net_names,
                    instances_dir=node_dir / "instances", networks_dir=node_dir / "networks")


def cloud_drift(cloud: Cloud, settle: float = TEST_SETTLE) -> list[Drift]:
    """Both halves: etcd among itself, and the cloud's node against etcd."""
    state = cloud_state(cloud, settle)
    return sorted(set(audit(state)) | set(check_node(state, site_of(cloud),
                                                     read_host(site_of(cloud)))))


def wait_converged(cloud: Cloud, timeout: float, settle: float = TEST_SETTLE) -> float:
    """Wait until the cloud shows no drift; the seconds it took. Fails
    listing the drift still there."""
    started = time.monotonic()
    last: list[Drift] = []

    def clean() -> bool:
        nonlocal last
        last = cloud_drift(cloud, settle)
        return not last

    try:
        wait_for(clean, timeout, "the cloud to converge", interval=0.5)
    except AssertionError:
        raise AssertionError("the cloud did not converge in "
                             f"{timeout:.0f} s; drift:\n" + "\n".join(map(str, last))) from None
    return time.monotonic() - started
