"""The systemd units, checked offline (no systemd runs on the build
machines): `systemd-analyze verify` finds nothing wrong in any of them, and
`systemd-analyze security --offline` scores the network daemons that run as
their own users (portal, etcd, Redis) as well confined. The agent runs as
root (libvirt, namespaces, nftables) and is only verified."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
import yaml

from cloudstate.config import REPO_ROOT

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze is not installed")

ANSIBLE = REPO_ROOT / "deploy" / "ansible"
RELEASE_PYTHON = "/opt/sfcloud/.venv/bin/python"
DEPLOY_PYTHON = "/opt/sfcloud-deploy/bin/python"  # sfcloud-deploy's, on the deploy machine
# The highest exposure (0 best, 10 worst) each confined unit may have.
MOST_EXPOSED = {"sfcloud-portal.service": 2.0, "sfcloud-etcd.service": 2.5,
                "sfcloud-redis.service": 2.5}


def _units(target: Path) -> list[Path]:
    """Every unit as a node gets it: the release's, and the roles' rendered
    with the deploy's variables; the release's Python (absent here: verify
    checks every command exists) stands in for this one."""
    variables = yaml.safe_load((ANSIBLE / "group_vars" / "all.yml").read_text())
    made = []
    (target / "release").mkdir(parents=True)
    (target / "deploy").mkdir(parents=True)
    for path in sorted((REPO_ROOT / "deploy" / "systemd").glob("*.service")) + \
            sorted((REPO_ROOT / "deploy" / "systemd").glob("*.timer")):
        made.append(target / "release" / path.name)
        made[-1].write_text(path.read_text().replace(RELEASE_PYTHON, sys.executable)
                            .replace(DEPLOY_PYTHON, sys.executable))
    for template in sorted(ANSIBLE.glob("roles/*/templates/*.service.j2")):
        text = jinja2.Template(template.read_text(), undefined=jinja2.StrictUndefined
                               ).render(**variables)
        made.append(target / "deploy" / template.name.removesuffix(".j2"))
        made[-1].write_text(text)
    return made


def test_every_unit_verifies(tmp_path: Path) -> None:
    units = _units(tmp_path)
    assert len(units) == len({u.parent.name + u.name for u in units})
    assert {u.name for u in units} >= {"sfcloud-portal.service", "sfcloud-nodeagent.service",
                                       "sfcloud-etcd.service", "sfcloud-redis.service",
                                       "sfcloud-accept-joins.service"}
    for unit in units:
        result = subprocess.run(["systemd-analyze", "verify", str(unit)],
                                capture_output=True, text=True, timeout=60)
        said = (result.stdout + result.stderr).strip()
        assert result.returncode == 0 and not said, f"{unit.name}: {said}"


@pytest.mark.parametrize("name", sorted(MOST_EXPOSED))
def test_network_daemons_are_confined(tmp_path: Path, name: str) -> None:
    # The portal's unit is the release's; etcd's and Redis' the deploy's
    # (what nodes get: the release's one-member etcd unit is for one machine).
    units = {u.name: u for u in _units(tmp_path) if u.parent.name == "release"}
    units.update({u.name: u for u in _units(tmp_path / "again") if u.parent.name == "deploy"})
    unit = units[name]
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                            capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= MOST_EXPOSED[name], result.stdout[-2500:]
