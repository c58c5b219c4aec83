"""Network namespaces that play the world around a test cloud.

Nothing here touches the machine's own links or routes: every link and
namespace is created fresh with the test's own prefix, traffic only ever goes
between them, and ``close()`` removes all of it (also after a failed test).

- ``OutsideWorld``: the "internet" beyond a cloud's uplink. A namespace
  ``<p>-out`` plays the upstream router, holding the floating network's
  router address on a veth whose other end (``<p>u``) stays in the root
  namespace for the network node to use as its uplink; behind it, a
  namespace ``<p>-www`` plays a far host (``UPSTREAM``) running a tiny HTTP
  server that answers with the address it saw the request come from.
- ``Mesh``: simulated hypervisors. Each host is a namespace with an address
  on a shared "switch" (a bridge in its own namespace), so VXLAN between
  hosts really leaves one namespace for another; a relay makes the root
  namespace's etcd reachable on each host's own loopback.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cloudstate.config import REPO_ROOT

FLOATING_NETWORK = "192.0.2.0/28"  # TEST-NET-1: never routed anywhere
FLOATING_ROUTER = "192.0.2.1"
UPSTREAM_NETWORK = "203.0.113.0/24"  # TEST-NET-3
UPSTREAM_ROUTER = "203.0.113.1"
UPSTREAM = "203.0.113.10"
UPSTREAM_PORT = 8080
MESH_NETWORK = "198.18.0"  # benchmarking range, inside our namespaces only


def ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=30)


def in_netns(netns: str, *argv: str, timeout: float = 30, check: bool = False
             ) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True, text=True,
                          timeout=timeout, check=check)


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def link_exists(name: str, netns: str | None = None) -> bool:
    return ip("link", "show", "dev", name, netns=netns, check=False).returncode == 0


def ping(netns: str, address: str, count: int = 2, wait: int = 2) -> bool:
    """busybox ping from inside ``netns`` (the host has no ping of its own)."""
    result = in_netns(netns, "busybox", "ping", "-c", str(count), "-W", str(wait), address,
                      timeout=count * wait + 10)
    return result.returncode == 0


@dataclass
class OutsideWorld:
    prefix: str = field(default_factory=lambda: "sfw" + secrets.token_hex(3))
    started: list[str] = field(default_factory=list)
    server: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def outside(self) -> str:
        return f"{self.prefix}-out"

    @property
    def www(self) -> str:
        return f"{self.prefix}-www"

    @property
    def uplink(self) -> str:
        """The root-namespace end, for the network node's SFCLOUD_UPLINK."""
        return f"{self.prefix}u"

    def start(self, workdir: Path) -> OutsideWorld:
        try:
            for name in (self.outside, self.www):
                ip("netns", "add", name)
                self.started.append(name)
                ip("link", "set", "lo", "up", netns=name)
            ip("link", "add", self.uplink, "type", "veth", "peer", "name", "up0",
               "netns", self.outside)
            ip("link", "set", self.uplink, "up")
            ip("addr", "add", f"{FLOATING_ROUTER}/{FLOATING_NETWORK.split('/')[1]}", "dev", "up0",
               netns=self.outside)
            ip("link", "set", "up0", "up", netns=self.outside)
            ip("link", "add", "www0", "netns", self.outside, "type", "veth", "peer", "name",
               "eth0", "netns", self.www)
            ip("addr", "add", f"{UPSTREAM_ROUTER}/24", "dev", "www0", netns=self.outside)
            ip("link", "set", "www0", "up", netns=self.outside)
            ip("addr", "add", f"{UPSTREAM}/24", "dev", "eth0", netns=self.www)
            ip("link", "set", "eth0", "up", netns=self.www)
            ip("route", "add", "default", "via", UPSTREAM_ROUTER, netns=self.www)
            in_netns(self.outside, "sysctl", "-qw", "net.ipv4.ip_forward=1", check=True)
            self.log_path = workdir / f"{self.prefix}-upstream.log"
            self.server = subprocess.Popen(
                ["ip", "netns", "exec", self.www, sys.executable, "-m", "tests.support.upstream",
                 str(UPSTREAM_PORT), str(self.log_path)],
                cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            )
            deadline = time.monotonic() + 15
            while not self.log_path.exists():
                if time.monotonic() > deadline:
                    raise RuntimeError("the upstream test server did not start")
                time.sleep(0.05)
            return self
        except BaseException:
            self.close()
            raise

    def requests_seen(self) -> list[str]:
        """Source addresses of the requests the far host received, in order."""
        if self.log_path is None or not self.log_path.exists():
            return []
        return [line.split()[0] for line in self.log_path.read_text().splitlines()[1:] if line]

    def close(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.server.wait(timeout=5)
            if self.server.poll() is None:
                self.server.kill()
                self.server.wait()
        ip("link", "del", self.uplink, check=False)
        for name in reversed(self.started):
            ip("netns", "del", name, check=False)
        self.started.clear()


@dataclass
class Host:
    name: str  # the namespace
    address: str  # on the mesh
    relay: subprocess.Popen | None = None


@dataclass
class Mesh:
    """Simulated hypervisors: namespaces joined by a switch."""

    prefix: str = field(default_factory=lambda: "sfm" + secrets.token_hex(3))
    hosts: list[Host] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"{self.prefix}-sw"

    def start(self, count: int) -> Mesh:
        try:
            ip("netns", "add", self.switch)
            self.namespaces.append(self.switch)
            ip("link", "add", "sw", "type", "bridge", netns=self.switch)
            ip("link", "set", "sw", "up", netns=self.switch)
            for index in range(count):
                host = Host(f"{self.prefix}-h{index}", f"{MESH_NETWORK}.{index + 11}")
                ip("netns", "add", host.name)
                self.namespaces.append(host.name)
                ip("link", "set", "lo", "up", netns=host.name)
                ip("link", "add", "mesh0", "netns", host.name, "type", "veth", "peer", "name",
                   f"p{index}", "netns", self.switch)
                ip("link", "set", f"p{index}", "master", "sw", "up", netns=self.switch)
                ip("addr", "add", f"{host.address}/24", "dev", "mesh0", netns=host.name)
                ip("link", "set", "mesh0", "up", netns=host.name)
                self.hosts.append(host)
            return self
        except BaseException:
            self.close()
            raise

    def relay(self, ports: list[int]) -> None:
        """Make these loopback ports of the root namespace (etcd's, the
        portal's) reachable on every host's own loopback."""
        for host in self.hosts:
            host.relay = subprocess.Popen(
                [sys.executable, "-m", "tests.support.netnsrelay", f"/run/netns/{host.name}",
                 *map(str, ports)],
                cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            )
        for host in self.hosts:
            for port in ports:
                _wait_listening(host.name, port)

    def close(self) -> None:
        for host in self.hosts:
            if host.relay is not None and host.relay.poll() is None:
                host.relay.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    host.relay.wait(timeout=5)
                if host.relay.poll() is None:
                    host.relay.kill()
                    host.relay.wait()
        for name in reversed(self.namespaces):
            ip("netns", "del", name, check=False)
        self.namespaces.clear()


def _wait_listening(netns: str, port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = in_netns(netns, "ss", "-Hltn", f"sport = :{port}")
        if result.stdout.strip():
            return
        time.sleep(0.05)
    raise RuntimeError(f"the etcd relay in {netns} did not start")
