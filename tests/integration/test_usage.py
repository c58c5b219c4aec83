"""Usage on a real cloud with a real guest: /metrics as curl and Prometheus'
parser read it (an agent's over TLS, with a monitor's certificate that opens
nothing else), its figures against libvirt's and the host's own; Shaken
Fist's resources events through sf-client; the history surviving restarts
of the agent and of the portal, and leaving with its instance; live samples
through the portal's websocket."""

from __future__ import annotations

import json
import secrets
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from cloudstate import signing, tls, usage
from cloudstate.consoles import AGENT_GRANT_PURPOSE, consolelog_path, grant_claims
from nodeagent.usage.history import SUFFIX
from tests.support.cloud import Cloud, wait_for
from tests.support.consoles import open_socket, web_login
from tests.support.usage import (
    USAGE_INTERVAL,
    agent_url,
    boot_guest,
    curl,
    history,
    monitor,
    scrape,
    usage_cloud,
    wait_for_samples,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ucloud(etcd_server, guest_image_dir: Path, libvirt_daemon: None) -> Iterator[Cloud]:  # type: ignore[no-untyped-def]
    with usage_cloud(etcd_server, guest_image_dir) as running:
        yield running


@pytest.fixture(scope="module")
def guest(ucloud: Cloud) -> str:
    return boot_guest(ucloud, f"usage-{secrets.token_hex(3)}")


def _libvirt_stats(uuid: str) -> dict:
    """libvirt's own bulk statistics of one domain, read directly."""
    conn = libvirt.open("qemu:///system")
    try:
        [(_, stats)] = conn.domainListGetStats([conn.lookupByUUIDString(uuid)], 0)
        return dict(stats)
    finally:
        conn.close()


def _meminfo_bytes(field: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name == field:
            return int(rest.split()[0]) * 1024
    raise AssertionError(field)


def _one(samples: dict, name: str, **labels: str) -> float:
    found = [s for s in samples.get(name, []) if all(s.labels.get(k) == v
                                                    for k, v in labels.items())]
    assert len(found) == 1, f"{name} {labels}: {found}"
    return float(found[0].value)


def test_agent_metrics_agree_with_libvirt_and_the_host(ucloud: Cloud, guest: str) -> None:
    url = agent_url(ucloud) + "/metrics"
    prometheus = monitor(ucloud)
    assert curl(url, token=None, credentials=prometheus)[0] == 401
    assert curl(url, token="not-the-token", credentials=prometheus)[0] == 401
    labels = {"uuid": guest}
    # libvirt may leave a busy domain's block statistics out of one sample (the
    # agent then shows no figure rather than 0): read until a sample has them.
    deadline = time.monotonic() + USAGE_INTERVAL * 4
    while True:
        before = _libvirt_stats(guest)
        samples = scrape(url, credentials=prometheus)
        after = _libvirt_stats(guest)
        has_disk = any(s.labels.get("uuid") == guest
                       for s in samples.get("sfcloud_domain_disk_read_bytes_total", []))
        if has_disk or time.monotonic() > deadline:
            break
        time.sleep(USAGE_INTERVAL / 2)
    # A counter read between two readings of libvirt's own lies between them.
    cpu = _one(samples, "sfcloud_domain_cpu_seconds_total", **labels)
    assert before["cpu.time"] / 1e9 - USAGE_INTERVAL * 2 <= cpu <= after["cpu.time"] / 1e9
    read = _one(samples, "sfcloud_domain_disk_read_bytes_total", **labels)
    libvirt_read = sum(after.get(f"block.{i}.rd.bytes", 0) for i in range(after["block.count"]))
    assert 0 < read <= libvirt_read
    assert _one(samples, "sfcloud_domain_vcpus", **labels) == after["vcpu.current"] == 1
    assert _one(samples, "sfcloud_domain_memory_max_bytes", **labels) == \
        after["balloon.maximum"] * 1024 == 128 * 2**20
    resident = _one(samples, "sfcloud_domain_memory_resident_bytes", **labels)
    assert abs(resident - after["balloon.rss"] * 1024) < 64 * 2**20
    [named] = [s for s in samples["sfcloud_domain_cpu_seconds_total"] if s.labels["uuid"] == guest]
    assert named.labels["namespace"] == "system" and named.labels["name"].startswith("usage-")
    # The node: one guest of this cloud running, and the host's memory as /proc says.
    assert _one(samples, "sfcloud_node_guests_running") == 1
    assert _one(samples, "sfcloud_node_memory_total_bytes") == _meminfo_bytes("MemTotal")
    assert _one(samples, "sfcloud_usage_interval_seconds") == USAGE_INTERVAL
    assert _one(samples, "sfcloud_agent_queue_waiting", queue="instances") >= 0
    assert sum(s.value for s in samples["sfcloud_etcd_request_duration_seconds_count"]) > 0


def _grant(cloud: Cloud, path: str) -> str:
    """A grant for one GET on the agent, as the portal signs them."""
    secret = cloud.env["SFCLOUD_CLUSTER_SECRET"].encode()
    return signing.sign(secret, AGENT_GRANT_PURPOSE,
                        grant_claims(node=cloud.node, method="GET", path=path), 30)


def test_an_agents_metrics_want_a_monitor_certificate_and_the_token(ucloud: Cloud,
                                                                   guest: str) -> None:
    base = agent_url(ucloud)
    prometheus = monitor(ucloud)
    # The token and the cloud's CA to check the agent with, but no certificate of
    # our own: the agent ends the handshake (TLS 1.3: right after it), no HTTP answer.
    status, complaint = curl(base + "/metrics", ca=prometheus.ca)
    assert status == 0, complaint
    # The monitor's certificate without the token: refused.
    assert curl(base + "/metrics", token=None, credentials=prometheus)[0] == 401
    # With the token: figures Prometheus' parser reads.
    assert scrape(base + "/metrics", credentials=prometheus)["sfcloud_node_guests_running"]
    # A grant route, with a grant for exactly this request: not a monitor's door...
    path = consolelog_path(guest)
    assert curl(base + path, token=_grant(ucloud, path), credentials=prometheus)[0] == 403
    # ...while the portal's certificate still opens it.
    portal = tls.portal(ucloud.pki_dir)
    assert curl(base + path, token=_grant(ucloud, path), credentials=portal)[0] == 200


def test_portal_metrics_count_requests_and_websockets(ucloud: Cloud, guest: str) -> None:
    url = ucloud.url + "/metrics"
    assert curl(url, token=None)[0] == 401
    api = ucloud.api()
    for _ in range(3):
        assert api.get(f"/instances/{guest}").status_code == 200
    session = web_login(ucloud.url, "admin", ucloud.admin_password)
    with open_socket(session, ucloud.url, f"/ws/usage/instances/{guest}/") as ws:
        ws.recv(timeout=30)
        samples = scrape(url)
        assert _one(samples, "sfcloud_portal_websockets_open", kind="usage") == 1
    served = _one(samples, "sfcloud_portal_requests_total", door="api", method="GET",
                  route="/api/instances/<str:ref>", status="200")
    assert served >= 3
    assert _one(samples, "sfcloud_portal_request_duration_seconds_count", door="api",
                method="GET", route="/api/instances/<str:ref>") == served
    assert sum(s.value for s in samples["sfcloud_etcd_request_duration_seconds_count"]) > 0
    # Gone once the page closes.
    wait_for(lambda: _one(scrape(url), "sfcloud_portal_websockets_open", kind="usage") == 0,
             10, "the websocket to count as closed")


def test_resources_events_as_sf_client_reads_them(ucloud: Cloud, guest: str) -> None:
    extra = json.loads(ucloud.sf("--json", "node", "resources", ucloud.node).stdout)
    assert extra["memory_max"] == _meminfo_bytes("MemTotal") // 2**20
    assert extra["is_hypervisor"] is True and extra["cpu_max"] >= 1
    assert extra["disk_total"] > extra["disk_used"] > 0
    # The first one is logged as the agent starts, before the guest existed: the newest says
    # what the node held then, and the next (five minutes on) will count the guest.
    assert extra["instances_total"] in (0, 1)
    assert ucloud.sf("node", "cpuhogs").returncode == 0


def test_live_samples_reach_a_page_within_an_interval(ucloud: Cloud, guest: str) -> None:
    session = web_login(ucloud.url, "admin", ucloud.admin_password)
    with open_socket(session, ucloud.url, f"/ws/usage/instances/{guest}/") as ws:
        first = json.loads(ws.recv(timeout=30))
        assert first == {"type": "state", "live": True, "reason": None}
        arrivals, taken, memory = [], [], []
        while len(taken) < 3:
            message = json.loads(ws.recv(timeout=USAGE_INTERVAL * 3))
            if message["type"] == "sample":
                arrivals.append(time.time())
                taken.append(message["t"])
                memory.append(message["values"]["memory"])
                assert set(message["values"]) == set(usage.INSTANCE_METRICS)
    # libvirt may leave a busy domain's balloon figures out of one sample (the
    # page then shows a gap, not 0); the others have them.
    assert any(used is not None and used > 0 for used in memory), memory
    assert all(used is None or used > 0 for used in memory), memory
    # A sample every interval, each reaching the page moments after it was taken.
    gaps = [b - a for a, b in zip(taken, taken[1:], strict=False)]
    assert all(abs(gap - USAGE_INTERVAL) < 1 for gap in gaps), gaps
    assert all(0 <= arrived - t < USAGE_INTERVAL for arrived, t in zip(arrivals, taken,
                                                                       strict=True))


def test_history_survives_restarts_and_leaves_with_its_instance(ucloud: Cloud) -> None:
    uuid = boot_guest(ucloud, f"usage-kept-{secrets.token_hex(3)}")
    session = web_login(ucloud.url, "admin", ucloud.admin_password)
    path = f"/instances/{uuid}/usage/"
    before = wait_for_samples(session, ucloud, path, count=3)
    sampled = {t for t, v in zip(before["times"], before["metrics"]["memory"], strict=True)
               if v is not None}
    node_path = f"/nodes/{ucloud.node}/usage/"
    assert len([v for v in history(session, ucloud, node_path)["metrics"]["guests"]
                if v is not None]) >= 3

    ucloud.stop_agent()
    ucloud.start_agent()
    ucloud.stop_portal()
    ucloud.start_portal()
    session = web_login(ucloud.url, "admin", ucloud.admin_password)
    after = wait_for_samples(session, ucloud, path, count=len(sampled) + 1)
    kept = {t for t, v in zip(after["times"], after["metrics"]["memory"], strict=True)
            if v is not None}
    assert sampled <= kept, "the history from before the restarts is gone"
    day = history(session, ucloud, path, "day")
    assert day["step"] == 300 and len(day["times"]) == 288 and day["metrics"]["memory"][-1]

    files = ucloud.state_dir / "node" / ucloud.node / "usage"
    assert (files / f"{uuid}{SUFFIX}").exists()
    # What guests did is the agent's alone (cloudstate.privacy).
    assert stat.S_IMODE(files.stat().st_mode) == 0o700
    assert {stat.S_IMODE(f.stat().st_mode) for f in files.iterdir()} == {0o600}
    assert ucloud.api().delete(f"/instances/{uuid}").status_code == 200
    wait_for(lambda: not (files / f"{uuid}{SUFFIX}").exists(), 60,
             "the instance's history to go with it")
    assert session.get(f"{ucloud.url}{path}", timeout=30).status_code == 404


def test_bad_ranges_and_strangers_get_clear_answers(ucloud: Cloud, guest: str) -> None:
    session = web_login(ucloud.url, "admin", ucloud.admin_password)
    answer = session.get(f"{ucloud.url}/instances/{guest}/usage/?range=year", timeout=30)
    assert answer.status_code == 400
    assert answer.json() == {"error": "range: must be one of hour, day, week", "status": 400}
    missing = session.get(f"{ucloud.url}/nodes/no-such-node/usage/", timeout=30)
    assert missing.status_code == 404 and missing.json()["error"] == "node no-such-node not found"
