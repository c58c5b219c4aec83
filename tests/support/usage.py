"""A cloud for the usage tests (graphs, dashboard, /metrics): its agent samples
every USAGE_INTERVAL seconds, so a figure moves within a test's patience, and
both its portal and its agent expose /metrics under METRICS_TOKEN (the agent's
over TLS, to a monitor's certificate: ``monitor``)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from cloudstate import tls
from cloudstate.model import NodeInfo
from deploy.localetcd import LocalEtcd
from tests.support.cloud import Cloud, wait_for
from tests.support.pki import issue_monitor

USAGE_INTERVAL = 2
METRICS_TOKEN = "a-metrics-token-for-the-tests"  # noqa: S105 - a test's own


@contextmanager
def usage_cloud(etcd: LocalEtcd, image_dir: Path) -> Iterator[Cloud]:
    running = Cloud(etcd, demo_image=image_dir / "disk.qcow2",
                    SFCLOUD_USAGE_INTERVAL=str(USAGE_INTERVAL),
                    SFCLOUD_METRICS_TOKEN=METRICS_TOKEN)
    try:
        yield running.start()
    finally:
        running.stop()


def boot_guest(cloud: Cloud, name: str, cpus: int = 1) -> str:
    response = cloud.api().post("/instances", {
        "name": name, "cpus": cpus, "memory": 128, "disk": [{"size": 1, "base": "demo"}]})
    assert response.status_code == 200, response.text
    uuid = response.json()["uuid"]
    cloud.wait_console(uuid, "SFCLOUD-READY", timeout=180)
    return str(uuid)


def agent_url(cloud: Cloud) -> str:
    kv = cloud.etcd_call(lambda etcd: etcd.get(cloud.keys.node(cloud.node)))
    info = NodeInfo.from_json(kv.value)
    return f"https://{info.ip}:{info.agent_port}"


def monitor(cloud: Cloud) -> tls.Credentials:
    """The files Prometheus scrapes the agents with: a monitor's certificate
    from the cloud's CA (``python -m deploy.pki issue monitor prometheus``)."""
    return issue_monitor(cloud.pki_dir, "prometheus")


def curl(url: str, token: str | None = METRICS_TOKEN,
         credentials: tls.Credentials | None = None,
         ca: Path | None = None) -> tuple[int, str]:
    """``curl`` as an operator (or Prometheus) would: the status and the body,
    or 0 and curl's complaint when no HTTP answer came (a refused handshake).
    ``credentials``: check the server with their CA and present their
    certificate, as Prometheus' tls_config does; ``ca``: only check the server."""
    argv = ["curl", "--silent", "--show-error", "--max-time", "30",
            "--write-out", "\n%{http_code}", url]
    if token is not None:
        argv += ["--header", f"Authorization: Bearer {token}"]
    if credentials is not None:
        argv += ["--cacert", str(credentials.ca), "--cert", str(credentials.cert),
                 "--key", str(credentials.key)]
    elif ca is not None:
        argv += ["--cacert", str(ca)]
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    body, _, status = result.stdout.rpartition("\n")
    if result.returncode != 0:
        return 0, result.stderr
    return int(status), body


def scrape(url: str, credentials: tls.Credentials | None = None) -> dict[str, list[Any]]:
    """/metrics read with curl and parsed by prometheus_client's text parser:
    every sample, by its name."""
    status, text = curl(url, credentials=credentials)
    assert status == 200, text
    found: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def history(session: Any, cloud: Cloud, path: str, range_name: str = "hour") -> dict[str, Any]:
    response = session.get(f"{cloud.url}{path}?range={range_name}", timeout=30)
    assert response.status_code == 200, response.text
    return json.loads(response.text)


def wait_for_samples(session: Any, cloud: Cloud, path: str, count: int = 2) -> dict[str, Any]:
    """The history once it holds ``count`` finest-tier slots with figures."""
    def enough() -> dict[str, Any] | None:
        found = history(session, cloud, path)
        points = [v for v in found["metrics"]["cpu"] if v is not None]
        return found if len(points) >= count else None

    return wait_for(enough, 60, f"{count} samples in {path}", interval=1)
