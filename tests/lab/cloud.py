"""A cloud deployed by ``sfcloud-deploy`` onto a lab of hosts (tests/lab/hosts).

The operator's namespace is the machine sfcloud-deploy runs on: every verb
runs there, as a user types it, and reaches the hosts over SSH. The real
``sf-client`` runs there too, against the first portal. Releases are built
from this checkout; the wheelhouse (the nodes' Python packages, which needs
PyPI once) is kept in the test cache and shared by every lab.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloudstate.config import REPO_ROOT
from tests.lab.hosts import Lab, LabHost

# Every figure the lab measured, printed as it is taken (pytest -s) and
# again, all together, when the lab comes down: the closing note's evidence.
FIGURES: dict[str, object] = {}


def figure(name: str, value: object) -> None:
    FIGURES[name] = value
    print(f"\nLAB FIGURE {name}: {value}", flush=True)


SF_CLIENT = str(Path(sys.executable).with_name("sf-client"))
ETCDCTL = "/usr/bin/etcdctl"


def release_cache() -> Path:
    """Where wheelhouses and the nodes' build venv are kept between labs."""
    root = Path(os.environ.get("SFCLOUD_TEST_CACHE") or REPO_ROOT / "var" / "cache")
    cache = root / "deploy-releases"
    cache.mkdir(parents=True, exist_ok=True)
    return cache


@dataclass
class LabCloud:
    lab: Lab
    source: Path = REPO_ROOT
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def deploy_dir(self) -> Path:
        return self.lab.directory / "deploy"

    # --- sfcloud-deploy ------------------------------------------------------------------

    def seed_releases(self) -> None:
        """The cached wheelhouses, linked into the deploy directory (a new
        one is built, with PyPI, outside the lab's namespaces)."""
        releases = self.deploy_dir / "releases"
        releases.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.deploy_dir.chmod(0o700)
        for cached in release_cache().iterdir():
            target = releases / cached.name
            if not target.exists():
                target.symlink_to(cached)

    def build(self, source: Path | None = None) -> None:
        """Build a release outside the lab (pip may need PyPI for a new
        wheelhouse), and keep its wheelhouse in the cache."""
        self.seed_releases()
        self.deploy(["build", "--source", str(source or self.source)], in_lab=False)
        for made in (self.deploy_dir / "releases").iterdir():
            if (made.name.startswith("wheels-") or made.name.startswith("buildenv-")) \
                    and not made.is_symlink() and not made.name.endswith(".partial"):
                cached = release_cache() / made.name
                if not cached.exists():
                    shutil.move(str(made), cached)
                    made.symlink_to(cached)

    def deploy(self, args: Sequence[str], *, check: bool = True, in_lab: bool = True,
               timeout: float = 900) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "deploy.cli", "--dir", str(self.deploy_dir), *args]
        if in_lab:
            argv = self.lab.operator_argv(*argv)
        started = time.monotonic()
        result = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=timeout)
        self.timings[" ".join(args[:2])] = round(time.monotonic() - started, 1)
        if check and result.returncode != 0:
            raise AssertionError(f"sfcloud-deploy {' '.join(args)} failed "
                                 f"({result.returncode}):\n{result.stdout[-4000:]}\n"
                                 f"{result.stderr[-4000:]}")
        return result

    def init(self, first: str = "h1", *, database: str = "sqlite") -> None:
        self.build()
        self.deploy(["init", "--name", first, "--address", self.lab.hosts[first].address,
                     "--service-manager", "none", "--database", database,
                     "--source", str(self.source),
                     "--ssh-key", str(self.lab.key), "--known-hosts", str(self.lab.known_hosts),
                     "--demo-image", demo_image()])

    def add_node(self, name: str, *flags: str) -> subprocess.CompletedProcess[str]:
        return self.deploy(["add-node", name, "--address", self.lab.hosts[name].address,
                            *flags])

    def console_log(self, node: str, uuid: str) -> str:
        path = f"/var/lib/sfcloud/node/{node}/instances/{uuid}/console.log"
        return self.lab.hosts[node].run("cat", path, check=False).stdout

    def secret(self, name: str) -> str:
        return (self.deploy_dir / "secrets" / name).read_text().strip()

    def config(self) -> dict[str, Any]:
        import yaml

        return yaml.safe_load((self.deploy_dir / "cloud.yml").read_text())

    # --- talking to the cloud ---------------------------------------------------------------

    def portal_url(self, host: str = "h1") -> str:
        return f"http://{self.lab.hosts[host].address}:{self.config()['portal']['port']}"

    def api(self, method: str, path: str, body: dict | None = None, portal: str = "h1") -> Any:
        """The portal's JSON API as the system namespace (its key), from this
        process through the lab's forwarder; a refusal raises."""
        import urllib.request

        port = self.config()["portal"]["port"]
        base = f"http://{self.lab.forward(portal, port)}/api"
        # The portal answers only the Host names it serves (SFCLOUD_ALLOWED_HOSTS).
        host = f"{self.lab.hosts[portal].address}:{port}"

        def call(method: str, path: str, body: dict | None, token: str | None) -> Any:
            request = urllib.request.Request(
                base + path, method=method, data=json.dumps(body or {}).encode(),
                headers={"Content-Type": "application/json", "Host": host,
                         **({"Authorization": f"Bearer {token}"} if token else {})})
            with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310
                return json.loads(answer.read())

        token = call("POST", "/auth", {"namespace": "system",
                                       "key": self.secret("system_key")}, None)["access_token"]
        return call(method, path, body, token)

    def sf(self, *args: str, check: bool = True, portal: str = "h1",
           timeout: float = 240) -> subprocess.CompletedProcess[str]:
        """The real Shaken Fist client, on the operator's machine."""
        env = {**os.environ, "SHAKENFIST_API_URL": f"{self.portal_url(portal)}/api",
               "SHAKENFIST_NAMESPACE": "system", "SHAKENFIST_KEY": self.secret("system_key")}
        env.pop("http_proxy", None)
        env.pop("HTTP_PROXY", None)
        result = subprocess.run(self.lab.operator_argv(SF_CLIENT, *args), env=env,
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"sf-client {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def sf_json(self, *args: str, portal: str = "h1") -> Any:
        return json.loads(self.sf("--json", *args, portal=portal).stdout)

    def etcdctl(self, *args: str, host: str = "h1", endpoints: Sequence[str] | None = None,
                check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """etcdctl on ``host`` with that host's own etcd certificate."""
        pki = "/var/lib/sfcloud/pki"
        listed = endpoints or [f"https://{self.lab.hosts[host].address}:2379"]
        return self.lab.hosts[host].run(
            "env", "ETCDCTL_API=3", ETCDCTL, f"--endpoints={','.join(listed)}",
            f"--cacert={pki}/ca.crt", f"--cert={pki}/etcd-{host}.crt",
            f"--key={pki}/etcd-{host}.key",
            "--dial-timeout=3s", "--command-timeout=10s", *args,
            check=check, timeout=timeout)


# How deploy/ansible/tasks/service.yml starts a service without an init
# system; the tests start one again this way after killing it, as systemd's
# Restart= would.
_RUNSERVICE = ["/usr/bin/python3", "/usr/local/lib/sfcloud-deploy/runservice.py"]
SERVICES: dict[str, tuple[str, list[str], list[str]]] = {
    # name: (user, env files, command)
    "sfcloud-etcd": ("etcd", ["--env-file=/etc/sfcloud/etcd.env",
                              "--env-file-if-exists=/etc/sfcloud/etcd-bootstrap.env"],
                     ["/usr/bin/etcd"]),
    "sfcloud-nodeagent": ("root", ["--env-file=/etc/sfcloud/sfcloud.env"],
                          ["/opt/sfcloud/.venv/bin/python", "-m", "nodeagent"]),
}


def pidfile(service: str) -> str:
    return f"/run/sfcloud/{service}.pid"


def start_service(host: LabHost, service: str) -> None:
    user, env_files, command = SERVICES[service]
    host.run("start-stop-daemon", "--start", "--background", "--make-pidfile",
             "--pidfile", pidfile(service), "--chdir", "/opt/sfcloud",
             "--startas", _RUNSERVICE[0], "--", _RUNSERVICE[1],
             "--log", f"/var/log/sfcloud/{service}.log", "--user", user,
             "--chdir", "/opt/sfcloud", *env_files, "--", *command)


def stop_service(host: LabHost, service: str, *, kill: bool = False) -> None:
    """Stop it (TERM), or with ``kill`` as a crash would (KILL)."""
    host.run("start-stop-daemon", "--stop", "--pidfile", pidfile(service),
             "--remove-pidfile", "--retry", "KILL/5" if kill else "TERM/20/KILL/5")


def qemu_pids(host: LabHost) -> dict[str, int]:
    """Guest uuid -> its qemu's PID, for the guests running on ``host``
    (libvirt gives each qemu a mount namespace of its own, so they are
    found by the host's network namespace)."""
    assert host.sshd is not None
    netns = os.readlink(f"/proc/{host.sshd.pid}/ns/net")
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "ns" / "net") != netns:
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv[0].decode(errors="replace").rsplit("/", 1)[-1].startswith("qemu-system"):
            continue
        for index, arg in enumerate(argv[:-1]):
            if arg == b"-uuid":
                found[argv[index + 1].decode()] = int(entry.name)
    return found


def demo_image() -> str:
    """The test guest image (built once into the test cache), registered as
    the deployed cloud's ``demo`` image."""
    from tests.support.fixtures_images import ensure_guest_image, guest_image_cache_root

    return str(ensure_guest_image(guest_image_cache_root()) / "disk.qcow2")
