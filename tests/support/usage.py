"""A cloud for the usage tests (graphs, dashboard, /metrics): its agent samples
every USAGE_INTERVAL seconds, so a figure moves within a test's patience, and
both its portal and its agent expose /metrics under METRICS_TOKEN."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from cloudstate.model import NodeInfo
from tests.support.cloud import Cloud, wait_for

USAGE_INTERVAL = 2
METRICS_TOKEN = "a-metrics-token-for-the-tests"  # noqa: S105 - a test's own


@contextmanager
def usage_cloud(etcd_endpoint: str, image_dir: Path) -> Iterator[Cloud]:
    running = Cloud(etcd_endpoint, demo_image=image_dir / "disk.qcow2",
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
    return f"http://{info.ip}:{info.agent_port}"


def curl(url: str, token: str | None = METRICS_TOKEN) -> tuple[int, str]:
    """``curl`` as an operator (or Prometheus) would: the status and the body."""
    argv = ["curl", "--silent", "--show-error", "--max-time", "30",
            "--write-out", "\n%{http_code}", url]
    if token is not None:
        argv += ["--header", f"Authorization: Bearer {token}"]
    result = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60)
    body, _, status = result.stdout.rpartition("\n")
    return int(status), body


def scrape(url: str) -> dict[str, list[Any]]:
    """/metrics read with curl and parsed by prometheus_client's text parser:
    every sample, by its name."""
    status, text = curl(url)
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
