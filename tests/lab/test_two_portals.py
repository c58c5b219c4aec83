"""Two portals over PostgreSQL and Redis, on the lab's cloud.

h1 was made a cloud with ``--database postgresql`` (the deploy installs and
starts Debian's PostgreSQL and Redis there, reachable by the portals only,
each with a password; tests/lab/conftest.py). Here cloud.yml makes h2 a
portal too and ``apply`` converges: h1's PostgreSQL lets h2 in, then h2's
portal starts. A person's live instance list open on h2 shows an instance
created through h1's API.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import yaml

from cloudstate.config import REPO_ROOT
from tests.lab.cloud import LabCloud, figure

pytestmark = [pytest.mark.lab, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def portals(cloud: LabCloud) -> LabCloud:
    """The lab's cloud with h2 a second portal, as an operator makes one:
    cloud.yml edited, then ``sfcloud-deploy apply``."""
    path = cloud.deploy_dir / "cloud.yml"
    config = yaml.safe_load(path.read_text())
    if not config["nodes"]["h2"].get("portal"):
        config["nodes"]["h2"]["portal"] = True
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        cloud.deploy(["apply"])
        figure("h2 made a second portal, apply (s)", cloud.timings["apply"])
    return cloud


def test_both_portals_share_postgresql_and_redis(portals: LabCloud) -> None:
    cloud = portals
    for host in ("h1", "h2"):
        env = cloud.lab.hosts[host].run("cat", "/etc/sfcloud/sfcloud.env").stdout
        assert "SFCLOUD_DATABASE_URL_FILE=" in env and "SFCLOUD_REDIS_URL_FILE=" in env
    database = cloud.lab.hosts["h2"].run("cat", "/etc/sfcloud/database.url").stdout
    assert "postgres" in database and cloud.lab.hosts["h1"].address in database
    # PostgreSQL and Redis run on h1 only, and answer on the mesh.
    h1_processes = cloud.lab.hosts["h1"].run("ps", "-eo", "comm").stdout.split()
    assert "postgres" in h1_processes and "redis-server" in h1_processes


def test_a_page_on_one_portal_updates_live_after_an_action_on_the_other(
        portals: LabCloud) -> None:
    cloud = portals
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
