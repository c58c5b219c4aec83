"""A lab of Debian "machines" on this one machine, for sfcloud-deploy.

Each lab host is a network namespace with its own address on a private
switch and its own sshd, running in a private mount and UTS namespace: its
own host name, copy-on-write overlays on /etc, /var/lib, /var/log,
/var/cache, /root, /srv and /opt (what it installs or writes there is its
own, and nothing reaches the real ones), and private /run and /tmp. What a
deploy starts on a host over SSH (etcd, libvirtd, the node agent, guests,
the portal) lives in that host's namespaces, so a guest's tap, its VXLAN
and the mesh between hosts are real links between namespaces. An operator
namespace holds the machine ``sfcloud-deploy`` runs on.

What the hosts share with the machine: /usr (packages must be installed on
the machine itself; the tests' installer does it), the kernel, /dev and the
process table. So a lab removes only what is its own: every process whose
mount namespace is one of its hosts' (which includes what those hosts
started in namespaces of their own, such as dnsmasq), or that runs in one
of its network namespaces, and then its namespaces and files.

Addresses are private (10.77.0.0/24) and exist only inside the lab's
namespaces; nothing is routed anywhere else.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cloudstate.config import REPO_ROOT

SUBNET = "10.77.0"
PREFIXLEN = 24
OPERATOR_ADDRESS = f"{SUBNET}.2"
# Directories each host gets its own copy-on-write view of.
OVERLAID = ("etc", "var/lib", "var/log", "var/cache", "root", "srv", "opt")
SSHD = "/usr/sbin/sshd"

# Run as the first process of a host's mount namespace (by `sh`, with the
# lab directory and host name as its arguments): make the host's own file
# system, forget the libvirt domains the real machine defined, then become
# its sshd.
_HOST_INIT = r"""
set -eu
lab=$1; host=$2
hostname "$host"
for dir in etc var/lib var/log var/cache root srv opt; do
  mount -t overlay overlay \
    -o "lowerdir=/$dir,upperdir=$lab/$host/upper/$dir,workdir=$lab/$host/work/$dir" "/$dir"
done
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
mkdir -p /run/sshd /run/lock
echo "$host" > /etc/hostname
cp "$lab/hosts" /etc/hosts
rm -f /etc/libvirt/qemu/*.xml /etc/libvirt/qemu/autostart/*.xml
rm -rf /etc/sfcloud /var/lib/sfcloud /opt/sfcloud /opt/sfcloud-releases /opt/sfcloud-venvs
exec /usr/sbin/sshd -D -f "$lab/$host/sshd_config" -E "$lab/$host/sshd.log"
"""


def _run(argv: Sequence[str], *, timeout: float = 60, check: bool = True,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          check=check, env=env)


def _mount_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


@dataclass
class LabHost:
    name: str
    address: str
    netns: str
    sshd: subprocess.Popen[bytes] | None = None
    mount_ns: str | None = None  # its mount namespace, once its sshd runs

    def enter(self, *argv: str) -> list[str]:
        """``argv`` run inside this host (its mount, UTS and network namespaces)."""
        assert self.sshd is not None, f"{self.name} is not up"
        return ["nsenter", "-t", str(self.sshd.pid), "-m", "-u", "-n", "--", *argv]

    def run(self, *argv: str, timeout: float = 60, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        return _run(self.enter(*argv), timeout=timeout, check=check)

    def inner_namespaces(self) -> set[str]:
        """The network namespaces made inside this host (by its agent, as
        ``net:[inode]``): ``ip netns exec`` gives what runs there, such as a
        network's dnsmasq, a mount namespace of its own as well, so only its
        network namespace still says whose it is."""
        if self.sshd is None or self.sshd.poll() is not None:
            return set()
        listed = self.run("sh", "-c", 'for n in /run/netns/*; do [ -e "$n" ] && '
                          'stat -L -c %i "$n"; done; true', check=False)
        return {f"net:[{inode}]" for inode in listed.stdout.split()}

    def processes(self) -> list[int]:
        """Every process started inside this host, in any namespace of its own."""
        if self.mount_ns is None:
            return []
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and _mount_ns(int(entry.name)) == self.mount_ns:
                found.append(int(entry.name))
        return found


@dataclass
class Lab:
    """``Lab(["h1", "h2", "h3"]).up()``; ``down()`` removes everything it made."""

    names: Sequence[str]
    id: str = field(default_factory=lambda: secrets.token_hex(2))
    directory: Path = field(default_factory=lambda: Path(
        tempfile.mkdtemp(prefix="sfcloud-lab-", dir="/var/tmp")))
    hosts: dict[str, LabHost] = field(default_factory=dict)
    forwarder: subprocess.Popen[bytes] | None = None
    forwards: dict[tuple[str, int], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.switch = f"lab{self.id}-sw"
        self.operator = f"lab{self.id}-op"
        for index, name in enumerate(self.names):
            self.hosts[name] = LabHost(name, f"{SUBNET}.{11 + index}", f"lab{self.id}-{name}")
        os.chmod(self.directory, 0o755)  # noqa: S103 - the hosts' sshd reads its config here

    @classmethod
    def attach(cls, state: Path) -> Lab:
        """A lab another process brought up and described with ``describe``
        (while developing scenarios against a lab kept running)."""
        import json

        data = json.loads(state.read_text())
        lab = cls(list(data["sshd"]), id=data["id"], directory=Path(data["dir"]))
        for name, pid in data["sshd"].items():
            lab.hosts[name].sshd = _Running(pid)  # type: ignore[assignment]
            lab.hosts[name].mount_ns = _mount_ns(pid)
            lab.hosts[name].address = data["addresses"][name]
        return lab

    def describe(self, state: Path) -> None:
        import json

        state.write_text(json.dumps({
            "id": self.id, "dir": str(self.directory),
            "sshd": {n: h.sshd.pid for n, h in self.hosts.items() if h.sshd is not None},
            "addresses": {n: h.address for n, h in self.hosts.items()}}))

    # --- paths --------------------------------------------------------------------

    @property
    def key(self) -> Path:
        return self.directory / "keys" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "keys" / "known_hosts"

    # --- up -------------------------------------------------------------------------

    def up(self) -> Lab:
        try:
            self._switch()
            self._keys()
            self._attach(self.operator, OPERATOR_ADDRESS)
            self._hosts_file()
            for host in self.hosts.values():
                self._start(host)
            self._wait_for_ssh(list(self.hosts.values()))
        except BaseException:
            self.down()
            raise
        return self

    def add_host(self, name: str) -> LabHost:
        """One more machine on the same switch (a node to grow the cloud with)."""
        host = LabHost(name, f"{SUBNET}.{11 + len(self.hosts)}", f"lab{self.id}-{name}")
        self.hosts[name] = host
        self._hosts_file()
        self._start(host)
        self._wait_for_ssh([host])
        return host

    def _switch(self) -> None:
        _run(["ip", "netns", "add", self.switch])
        _run(["ip", "-n", self.switch, "link", "set", "lo", "up"])
        _run(["ip", "-n", self.switch, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", self.switch, "link", "set", "br0", "up"])

    def _attach(self, netns: str, address: str) -> None:
        """A namespace with one link into the switch (made inside the
        switch's namespace, so the root namespace never sees it)."""
        port = f"p-{netns.rsplit('-', 1)[-1]}"
        _run(["ip", "netns", "add", netns])
        _run(["ip", "-n", netns, "link", "set", "lo", "up"])
        _run(["ip", "-n", self.switch, "link", "add", port, "type", "veth", "peer", "name",
              "eth0", "netns", netns])
        _run(["ip", "-n", self.switch, "link", "set", port, "master", "br0", "up"])
        _run(["ip", "-n", netns, "addr", "add", f"{address}/{PREFIXLEN}", "dev", "eth0"])
        _run(["ip", "-n", netns, "link", "set", "eth0", "up"])

    def _keys(self) -> None:
        keys = self.directory / "keys"
        keys.mkdir(mode=0o700)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"lab{self.id}",
              "-f", str(self.key)])
        shutil.copy(f"{self.key}.pub", keys / "authorized_keys")
        os.chmod(keys, 0o755)  # noqa: S103 - sshd (as root) reads authorized_keys
        os.chmod(self.key, 0o600)

    def _hosts_file(self) -> None:
        lines = ["127.0.0.1 localhost"] + [f"{h.address} {h.name}" for h in self.hosts.values()]
        (self.directory / "hosts").write_text("\n".join(lines) + "\n")

    def _start(self, host: LabHost) -> None:
        self._attach(host.netns, host.address)
        home = self.directory / host.name
        for directory in OVERLAID:
            (home / "upper" / directory).mkdir(parents=True)
            (home / "work" / directory).mkdir(parents=True)
        host_key = home / "ssh_host_ed25519_key"
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)])
        (home / "sshd_config").write_text("\n".join([
            f"ListenAddress {host.address}",
            f"HostKey {host_key}",
            "PidFile /run/sshd.pid",
            f"AuthorizedKeysFile {self.directory / 'keys' / 'authorized_keys'}",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "StrictModes no",
            "UsePAM no",
            "PrintMotd no",
            "Subsystem sftp /usr/lib/openssh/sftp-server",
        ]) + "\n")
        (home / "init.sh").write_text(_HOST_INIT)
        public = (home / "ssh_host_ed25519_key.pub").read_text().split()
        with open(self.known_hosts, "a") as known:
            known.write(f"{host.address} {public[0]} {public[1]}\n")
        host.sshd = subprocess.Popen(
            ["ip", "netns", "exec", host.netns, "unshare", "--mount", "--uts",
             "--propagation", "private", "--", "sh", str(home / "init.sh"),
             str(self.directory), host.name],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)

    def _wait_for_ssh(self, hosts: list[LabHost], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        for host in hosts:
            while True:
                assert host.sshd is not None
                if host.sshd.poll() is not None:
                    log = (self.directory / host.name / "sshd.log")
                    raise RuntimeError(f"{host.name}'s sshd exited: "
                                       f"{log.read_text() if log.exists() else ''}")
                result = _run(self.operator_argv(*self.ssh_argv(host.name, "hostname")),
                              check=False, timeout=15)
                if result.returncode == 0 and result.stdout.strip() == host.name:
                    host.mount_ns = _mount_ns(host.sshd.pid)
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{host.name} did not answer over SSH: {result.stderr}")
                time.sleep(0.2)

    # --- using it ---------------------------------------------------------------------

    def operator_argv(self, *argv: str) -> list[str]:
        """``argv`` run on the operator's machine (its network namespace)."""
        return ["ip", "netns", "exec", self.operator, *argv]

    def ssh_argv(self, host: str, *argv: str) -> list[str]:
        return ["ssh", "-i", str(self.key), "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
                f"root@{self.hosts[host].address}", *argv]

    def forward(self, host: str, port: int) -> str:
        """``host:port`` made reachable from this process: "127.0.0.1:<local port>"."""
        key = (self.hosts[host].address, port)
        if key not in self.forwards:
            self.forwards[key] = _free_port()
            self._restart_forwarder()
        return f"127.0.0.1:{self.forwards[key]}"

    def _restart_forwarder(self) -> None:
        if self.forwarder is not None:
            self.forwarder.terminate()
            self.forwarder.wait(10)
        specs = [f"{local}:{address}:{port}" for (address, port), local in self.forwards.items()]
        self.forwarder = subprocess.Popen(
            [sys.executable, "-m", "tests.lab.forward", f"/run/netns/{self.operator}", *specs],
            cwd=REPO_ROOT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        for local in self.forwards.values():
            while not _listening(local):
                if time.monotonic() > deadline or self.forwarder.poll() is not None:
                    raise RuntimeError("the lab's port forwarder did not start")
                time.sleep(0.05)

    def disconnect(self, host: str) -> None:
        """Pull the host's network cable: its link to the switch goes down."""
        port = f"p-{self.hosts[host].netns.rsplit('-', 1)[-1]}"
        _run(["ip", "-n", self.switch, "link", "set", port, "down"])

    def reconnect(self, host: str) -> None:
        port = f"p-{self.hosts[host].netns.rsplit('-', 1)[-1]}"
        _run(["ip", "-n", self.switch, "link", "set", port, "up"])

    # --- down -------------------------------------------------------------------------

    def keep_logs(self, target: Path) -> None:
        """Each host's /var/log/sfcloud (services' logs), copied to
        ``target/<host>/`` before ``down`` removes them."""
        for host in self.hosts.values():
            logs = self.directory / host.name / "upper" / "var" / "log" / "sfcloud"
            if logs.is_dir():
                shutil.copytree(logs, target / host.name, dirs_exist_ok=True)
        deploy_logs = self.directory / "deploy" / "logs"
        if deploy_logs.is_dir():
            shutil.copytree(deploy_logs, target / "deploy", dirs_exist_ok=True)

    def down(self) -> None:
        """Remove every process, namespace and file of the lab (also after a
        failed ``up``)."""
        if self.forwarder is not None and self.forwarder.poll() is None:
            self.forwarder.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.forwarder.wait(10)
        inner = set()
        for host in self.hosts.values():
            inner |= host.inner_namespaces()
            self._stop_guests(host)
        self._kill_everything(inner)
        for netns in [h.netns for h in self.hosts.values()] + [self.operator, self.switch]:
            _run(["ip", "netns", "del", netns], check=False)
        shutil.rmtree(self.directory, ignore_errors=True)

    def _stop_guests(self, host: LabHost) -> None:
        """Destroy the host's guests through its own libvirtd, which then
        removes what it made for them (cgroups) as it does for any guest."""
        if host.sshd is None or host.sshd.poll() is not None:
            return
        if not host.run("test", "-S", "/run/libvirt/libvirt-sock", check=False).returncode == 0:
            return
        listed = host.run("virsh", "-c", "qemu:///system", "list", "--name", check=False)
        for domain in listed.stdout.split():
            host.run("virsh", "-c", "qemu:///system", "destroy", domain, check=False)

    def _kill_everything(self, inner_namespaces: set[str]) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = set(_in_network_namespaces(inner_namespaces))
            for host in self.hosts.values():
                pids.update(host.processes())
            for netns in [h.netns for h in self.hosts.values()] + [self.operator, self.switch]:
                listed = _run(["ip", "netns", "pids", netns], check=False)
                pids.update(int(pid) for pid in listed.stdout.split())
            pids.discard(os.getpid())
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(_exists(pid) for pid in pids):
                time.sleep(0.1)
        for host in self.hosts.values():
            if host.sshd is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    host.sshd.wait(5)


@dataclass
class _Running:
    """An attached host's sshd (started by another process)."""

    pid: int

    def poll(self) -> int | None:
        return None if _exists(self.pid) else 0

    def wait(self, timeout: float | None = None) -> int:
        return 0


def _in_network_namespaces(namespaces: set[str]) -> list[int]:
    found = []
    if not namespaces:
        return found
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "ns" / "net") in namespaces:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _exists(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0
