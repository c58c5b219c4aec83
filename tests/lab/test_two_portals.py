"""Two portals over PostgreSQL and Redis, on the lab's cloud.

h1 was made a cloud with ``--database postgresql`` (the deploy installs and
starts Debian's PostgreSQL and Redis there, reachable by the portals only,
each with a password); h2 joined with ``--portal`` (tests/lab/conftest.py).
A person's live instance list open on h2 shows an instance created through
h1's API.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from cloudstate.config import REPO_ROOT
from tests.lab.cloud import LabCloud, figure

pytestmark = [pytest.mark.lab, pytest.mark.timeout(1800)]


def test_both_portals_share_postgresql_and_redis(cloud: LabCloud) -> None:
    for host in ("h1", "h2"):
        env = cloud.lab.hosts[host].run("cat", "/etc/sfcloud/sfcloud.env").stdout
        assert "SFCLOUD_DATABASE_URL_FILE=" in env and "SFCLOUD_REDIS_URL_FILE=" in env
    database = cloud.lab.hosts["h2"].run("cat", "/etc/sfcloud/database.url").stdout
    assert "postgres" in database and cloud.lab.hosts["h1"].address in database
    # PostgreSQL and Redis run on h1 only, and answer on the mesh.
    h1_processes = cloud.lab.hosts["h1"].run("ps", "-eo", "comm").stdout.split()
    assert "postgres" in h1_processes and "redis-server" in h1_processes


def test_a_page_on_one_portal_updates_live_after_an_action_on_the_other(
        cloud: LabCloud) -> None:
    name = f"via-h1-{int(time.time())}"
    watcher = subprocess.Popen(
        cloud.lab.operator_argv(
            sys.executable, "-m", "tests.lab.livewatch", cloud.portal_url("h2"), "admin",
            str(cloud.deploy_dir / "secrets" / "admin_password"), "/ws/instances/", name,
            "180"),
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert watcher.stdout is not None
        opened = watcher.stdout.readline().strip()
        assert opened == "OPEN", opened + (watcher.stderr.read() if watcher.stderr else "")
        started = time.monotonic()
        made = cloud.sf_json("instance", "create", name, "1", "128", "-d", "1@demo",
                             portal="h1")
        seen = watcher.stdout.readline().strip()
        figure("h2's page showed h1's create after (s)",
               round(time.monotonic() - started, 1))
        assert seen == "SEEN", seen
        assert watcher.wait(30) == 0
        cloud.sf("instance", "delete", made["uuid"], portal="h2")
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait(10)
