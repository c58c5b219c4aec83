"""One dnsmasq per network, inside the network's namespace, on the network node.

It hands out exactly the addresses the portal reserved: its range is
``static`` and its hosts file lists each interface's MAC and address, so an
unknown MAC gets nothing. It keeps leases in memory only (``leasefile-ro``),
so everything it knows comes from the files we write:

- a hosts file that gained entries is re-read on SIGHUP;
- a hosts file that lost or changed an entry means a restart, because
  dnsmasq keeps an old guest's lease across SIGHUP and would refuse its
  address to the next guest (Shaken Fist's issue #1686);
- a changed configuration means a restart.

dnsmasq daemonises, so it outlives an agent that is restarted; the agent
finds its own dnsmasq processes again by their configuration path, which
lies under the node's state directory. Each is watched through a pidfd: its
exit (a crash, a kill) is an event that queues the network for repair, not
something a timer has to notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nodeagent.net.names import INSIDE

log = logging.getLogger(__name__)

CONF = "dnsmasq.conf"
HOSTS = "hosts"
NAMES = "names"
PIDFILE = "dnsmasq.pid"
LOGFILE = "dnsmasq.log"
LEASE_TIME = "1h"
DOMAIN_SUFFIX = "sfcloud"


class DnsmasqError(Exception):
    pass


@dataclass(frozen=True)
class DhcpHost:
    mac: str
    address: str
    hostname: str


@dataclass(frozen=True)
class DnsmasqConfig:
    """Everything one network's dnsmasq is told."""

    network: str  # "10.0.0.0/24"
    netmask: str
    router: str
    mtu: int
    dns: bool
    domain: str
    hosts: tuple[DhcpHost, ...]
    upstream: tuple[str, ...] = ()  # resolvers beyond the cloud
    names: tuple[tuple[str, str], ...] = ()  # extra (name, address) the DNS answers


def render_conf(config: DnsmasqConfig, directory: Path, user: str = "nobody") -> str:
    network_address = config.network.split("/")[0]
    lines = [
        "# Written by the sfcloud node agent; changes are overwritten.",
        f"user={user}",
        f"interface={INSIDE}",
        "bind-interfaces",
        "except-interface=lo",
        f"dhcp-range={network_address},static,{config.netmask},{LEASE_TIME}",
        f"dhcp-hostsfile={directory / HOSTS}",
        "dhcp-authoritative",
        # Leases in memory only: a restart forgets every old guest.
        "leasefile-ro",
        f"dhcp-option=option:router,{config.router}",
        f"dhcp-option=option:mtu,{config.mtu}",
        f"pid-file={directory / PIDFILE}",
        f"log-facility={directory / LOGFILE}",
    ]
    if config.dns:
        lines += [
            # The network's instance names, answered here; any other name
            # goes to the configured resolvers (none: no other names). Never
            # the host's own resolv.conf.
            "port=53",
            "no-resolv",
            "no-hosts",
            f"addn-hosts={directory / NAMES}",
            f"domain={config.domain}",
            f"local=/{config.domain}/",
            *(f"server={address}" for address in config.upstream),
            f"dhcp-option=option:dns-server,{config.router}",
            f"dhcp-option=option:domain-search,{config.domain}",
        ]
    else:
        lines.append("port=0")
        if config.upstream:
            lines.append(f"dhcp-option=option:dns-server,{','.join(config.upstream)}")
    return "\n".join(lines) + "\n"


def render_hosts(config: DnsmasqConfig) -> str:
    return "".join(f"{h.mac},{h.address},{h.hostname}\n" for h in config.hosts)


def render_names(config: DnsmasqConfig) -> str:
    """The instances' names, then the network's extra ones (a bare name in
    the network's domain too, a dotted one as given)."""
    lines = [f"{h.address} {h.hostname}.{config.domain} {h.hostname}\n" for h in config.hosts]
    lines += [f"{address} {name}.{config.domain} {name}\n" if "." not in name
              else f"{address} {name}\n" for name, address in config.names]
    return "".join(lines)


def bindings(hosts_text: str) -> set[tuple[str, str]]:
    found = set()
    for line in hosts_text.splitlines():
        parts = line.split(",")
        if len(parts) >= 2:
            found.add((parts[0], parts[1]))
    return found


def _write(path: Path, text: str, owner: int = 0) -> bool:
    """Write atomically, readable by ``owner`` (a uid) alone; False if the
    file already says exactly this."""
    if path.exists() and path.read_text() == text and path.stat().st_uid == owner:
        return False
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chown(tmp, owner, -1)
    os.replace(tmp, path)
    return True


def dnsmasq_user() -> tuple[str, int]:
    """Who dnsmasq runs as once it has its sockets: Debian's ``dnsmasq``
    user, not ``nobody`` (which other daemons share), so the hosts files it
    re-reads on SIGHUP can be its own and no one else's."""
    for name in ("dnsmasq", "nobody"):
        with contextlib.suppress(KeyError):
            return name, pwd.getpwnam(name).pw_uid
    raise DnsmasqError("neither a dnsmasq nor a nobody user exists to run dnsmasq as")


# --- processes -------------------------------------------------------------------------


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _is_ours(pid: int, conf: Path) -> bool:
    argv = _cmdline(pid)
    return bool(argv) and argv[0].endswith("dnsmasq") and f"--conf-file={conf}" in argv


def find_processes(root: Path) -> dict[Path, int]:
    """Every running dnsmasq whose configuration lies under ``root``: conf path -> pid."""
    prefix = f"--conf-file={root}/"
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        argv = _cmdline(int(entry.name))
        if not argv or not argv[0].endswith("dnsmasq"):
            continue
        for arg in argv[1:]:
            if arg.startswith(prefix):
                found[Path(arg.split("=", 1)[1])] = int(entry.name)
    return found


def running_pid(directory: Path) -> int | None:
    """The pid of this directory's dnsmasq if it runs, from its pid file
    (checked against the process's command line: pids get reused)."""
    try:
        pid = int((directory / PIDFILE).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _is_ours(pid, directory / CONF) else None


def stop(pid: int, conf: Path, timeout: float = 5.0) -> None:
    if not _is_ours(pid, conf):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _is_ours(pid, conf):
        time.sleep(0.02)
    if _is_ours(pid, conf):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@dataclass(frozen=True)
class Outcome:
    pid: int
    action: str  # "started", "restarted", "reloaded", "unchanged"


def ensure(namespace: str, directory: Path, config: DnsmasqConfig) -> Outcome:
    """Make this network's dnsmasq run with exactly ``config``."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o711)  # noqa: S103 - dnsmasq re-reads its files here, lists nothing
    user, uid = dnsmasq_user()
    old_hosts = (directory / HOSTS).read_text() if (directory / HOSTS).exists() else ""
    # The configuration is read once, as root; the hosts files again on SIGHUP,
    # after dnsmasq dropped root: those are its user's.
    conf_changed = _write(directory / CONF, render_conf(config, directory, user))
    hosts_text = render_hosts(config)
    hosts_changed = _write(directory / HOSTS, hosts_text, uid)
    names_changed = _write(directory / NAMES, render_names(config), uid)
    pid = running_pid(directory)
    lost_binding = bool(bindings(old_hosts) - bindings(hosts_text))
    if pid is not None and (conf_changed or lost_binding):
        stop(pid, directory / CONF)
        return Outcome(_start(namespace, directory), "restarted")
    if pid is None:
        return Outcome(_start(namespace, directory), "started")
    if hosts_changed or names_changed:
        os.kill(pid, signal.SIGHUP)
        return Outcome(pid, "reloaded")
    return Outcome(pid, "unchanged")


def _start(namespace: str, directory: Path) -> int:
    (directory / PIDFILE).unlink(missing_ok=True)
    result = subprocess.run(
        ["ip", "netns", "exec", namespace, "dnsmasq", f"--conf-file={directory / CONF}"],
        capture_output=True, text=True, timeout=30,
    )
    if result.returncode != 0:
        raise DnsmasqError(
            f"dnsmasq for {namespace} did not start: {(result.stderr or result.stdout).strip()}"
        )
    # It forks; the pid file appears once the daemon runs.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        pid = running_pid(directory)
        if pid is not None:
            # dnsmasq makes it world-readable; like everything here, it is ours.
            with contextlib.suppress(FileNotFoundError):
                os.chmod(directory / PIDFILE, 0o600)
            return pid
        time.sleep(0.02)
    raise DnsmasqError(f"dnsmasq for {namespace} started but wrote no pid file")


def remove(directory: Path) -> None:
    """Stop this directory's dnsmasq and remove its files."""
    pid = running_pid(directory)
    if pid is not None:
        stop(pid, directory / CONF)
    if directory.exists():
        for path in directory.iterdir():
            path.unlink(missing_ok=True)
        directory.rmdir()


def config_hash(config: DnsmasqConfig) -> str:
    return hashlib.sha256(repr(config).encode()).hexdigest()[:16]


class Watcher:
    """Calls ``on_exit(key)`` when a watched dnsmasq exits, by pidfd: no polling."""

    def __init__(self, on_exit: Callable[[str], None]):
        self._on_exit = on_exit
        self._watched: dict[str, tuple[int, int]] = {}  # key -> (pid, pidfd)

    def watch(self, key: str, pid: int) -> None:
        current = self._watched.get(key)
        if current is not None and current[0] == pid:
            return
        self.forget(key)
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._on_exit(key)
            return
        loop = asyncio.get_running_loop()
        self._watched[key] = (pid, fd)
        loop.add_reader(fd, self._exited, key, pid)

    def _exited(self, key: str, pid: int) -> None:
        current = self._watched.get(key)
        if current is None or current[0] != pid:
            return
        self.forget(key)
        log.warning("dnsmasq %d for %s exited; repairing", pid, key)
        self._on_exit(key)

    def forget(self, key: str) -> None:
        current = self._watched.pop(key, None)
        if current is not None:
            loop = asyncio.get_running_loop()
            loop.remove_reader(current[1])
            os.close(current[1])

    def close(self) -> None:
        for key in list(self._watched):
            self.forget(key)
