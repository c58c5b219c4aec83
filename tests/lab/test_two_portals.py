"""Two portals over PostgreSQL and Redis, deployed by sfcloud-deploy.

p1 is made a cloud with ``--database postgresql`` (the deploy installs and
starts Debian's PostgreSQL and Redis there, reachable by the portals
only, each with a password); p2 joins with ``--portal``. A person's live
instance list open on p2 shows an instance created through p1's API; a
person made through p1 logs in on p2 (one database).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudstate.config import REPO_ROOT
from tests.lab.cloud import LabCloud
from tests.lab.hosts import Lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def cloud() -> Iterator[LabCloud]:
    attached = os.environ.get("LAB_ATTACH_PORTALS")
    if attached:
        yield LabCloud(Lab.attach(Path(attached)))
        return
    lab = Lab(["p1", "p2"]).up()
    made = LabCloud(lab)
    try:
        made.init("p1", database="postgresql")
        made.add_node("p2", "--portal")
        lab.describe(lab.directory / "lab.json")
        yield made
    finally:
        print(f"\nLAB FIGURE two portals, sfcloud-deploy runs (s): {made.timings}", flush=True)
        lab.keep_logs(REPO_ROOT / "var" / "lab-logs" / lab.id)
        lab.down()


def test_both_portals_share_postgresql_and_redis(cloud: LabCloud) -> None:
    for host in ("p1", "p2"):
        env = cloud.lab.hosts[host].run("cat", "/etc/sfcloud/sfcloud.env").stdout
        assert "SFCLOUD_DATABASE_URL_FILE=" in env and "SFCLOUD_REDIS_URL_FILE=" in env
    database = cloud.lab.hosts["p2"].run("cat", "/etc/sfcloud/database.url").stdout
    assert "postgres" in database and cloud.lab.hosts["p1"].address in database
    # PostgreSQL and Redis run on p1 only, and answer on the mesh.
    p1_processes = cloud.lab.hosts["p1"].run("ps", "-eo", "comm").stdout.split()
    assert "postgres" in p1_processes and "redis-server" in p1_processes
    again = cloud.deploy(["apply"])
    assert "nothing changed" in again.stdout, again.stdout


def test_a_page_on_portal_b_updates_live_after_an_action_on_portal_a(
        cloud: LabCloud) -> None:
    name = f"via-p1-{int(time.time())}"
    watcher = subprocess.Popen(
        cloud.lab.operator_argv(
            sys.executable, "-m", "tests.lab.livewatch", cloud.portal_url("p2"), "admin",
            str(cloud.deploy_dir / "secrets" / "admin_password"), "/ws/instances/", name,
            "180"),
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert watcher.stdout is not None
        opened = watcher.stdout.readline().strip()
        assert opened == "OPEN", opened + (watcher.stderr.read() if watcher.stderr else "")
        started = time.monotonic()
        made = cloud.sf_json("instance", "create", name, "1", "128", "-d", "1@demo",
                             portal="p1")
        seen = watcher.stdout.readline().strip()
        print(f"\nLAB FIGURE p2's page showed p1's create after (s): "
              f"{round(time.monotonic() - started, 1)}", flush=True)
        assert seen == "SEEN", seen
        assert watcher.wait(30) == 0
        cloud.sf("instance", "delete", made["uuid"], portal="p2")
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait(10)
