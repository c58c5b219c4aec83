"""A pseudo-hypervisor with pseudo-guests, for testing the node agent's
security group filter with many ports and no emulator.

The hypervisor is a network namespace ``<tag>-hv`` holding one bridge per
network, named as the agent names them. Each pseudo-guest is a namespace of
its own with ``eth0`` (its interface's MAC and address) on a veth whose
other end sits in the bridge under the very name the agent gives the
interface's tap. The filter under test is the agent's own: a Snapshot of
records goes through ``policy.build`` and ``Firewall`` runs nft and conntrack
inside the hypervisor namespace. Every namespace carries a random tag and
``close()`` removes all of them; no traffic ever leaves them.

Sockets are made inside a namespace by switching the calling thread into it
for the ``socket()`` call only (a socket stays in the namespace it was made
in), so tests talk between guests from their own process.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import socket
import threading
import time
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from cloudstate.model import (
    AddressSet,
    Disk,
    InstanceSpec,
    InterfaceSpec,
    NetworkSpec,
    SecurityGroup,
    SecurityRule,
)
from nodeagent.net import policy
from nodeagent.net.firewall import Firewall
from nodeagent.net.names import NetNames
from nodeagent.net.snapshot import Snapshot
from tests.support.networld import in_netns, ip

NODE = "pseudo-hv"
_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNET = 0x40000000
_NETNS_LOCK = threading.Lock()


@contextlib.contextmanager
def inside(netns: str) -> Iterator[None]:
    """Run the calling thread in ``netns`` for a moment."""
    with _NETNS_LOCK:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
        try:
            if _libc.setns(target, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {netns}")
            try:
                yield
            finally:
                if _libc.setns(home, _CLONE_NEWNET) != 0:
                    os.abort()  # a thread left in a guest's namespace would mislead every test
        finally:
            os.close(target)
            os.close(home)


def sock(netns: str, kind: int = socket.SOCK_STREAM) -> socket.socket:
    with inside(netns):
        return socket.socket(socket.AF_INET, kind)


def rule(direction: str, **fields: object) -> SecurityRule:
    return SecurityRule(uuid=str(uuidlib.uuid4()), direction=direction, **fields)  # type: ignore[arg-type]


def group(name: str, *rules: SecurityRule, generation: int = 1) -> SecurityGroup:
    return SecurityGroup(uuid=str(uuidlib.uuid4()), name=name, namespace="test",
                         rules=list(rules), generation=generation)


@dataclass
class Guest:
    netns: str
    iface: InterfaceSpec
    address: str

    def connect(self, address: str, port: int, timeout: float = 1.5) -> socket.socket | None:
        """A connected TCP socket from this guest, or None (refused or no answer)."""
        client = sock(self.netns)
        client.settimeout(timeout)
        try:
            client.connect((address, port))
        except OSError:
            client.close()
            return None
        return client

    def reaches(self, address: str, port: int, timeout: float = 1.5) -> bool:
        """A TCP connection to ``address:port`` is answered with the echo."""
        client = self.connect(address, port, timeout)
        if client is None:
            return False
        with client:
            return echo(client)

    def run(self, *argv: str, timeout: float = 30) -> str:
        result = in_netns(self.netns, *argv, timeout=timeout)
        return result.stdout + result.stderr


def echo(client: socket.socket, payload: bytes = b"ping\n") -> bool:
    try:
        client.sendall(payload)
        return client.recv(64) == payload
    except OSError:
        return False


class EchoServer:
    """Echoes what it is sent, on TCP ``port`` in a guest (every connection
    in a thread of its own)."""

    def __init__(self, guest: Guest, port: int):
        self.listener = sock(guest.netns)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("0.0.0.0", port))
        self.listener.listen(64)
        self.listener.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(60)
            try:
                while data := conn.recv(4096):
                    conn.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.listener.close()


@dataclass
class PseudoHost:
    tag: str = field(default_factory=lambda: "sq" + secrets.token_hex(2))
    namespaces: list[str] = field(default_factory=list)
    guests: list[Guest] = field(default_factory=list)
    snap: Snapshot = field(default_factory=Snapshot)
    servers: list[EchoServer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.names = NetNames(self.tag, "0000")
        self.netns = f"{self.tag}-hv"
        self.firewall = Firewall(self.names.filter_table, self.tag, netns=self.netns)
        self.applied: policy.Policy | None = None
        self.zones: dict[int, int] = {}

    def start(self) -> PseudoHost:
        self._netns(self.netns)
        return self

    def _netns(self, name: str) -> None:
        ip("netns", "add", name)
        self.namespaces.append(name)
        ip("link", "set", "lo", "up", netns=name)

    # --- what the records say -------------------------------------------------------------

    def network(self, netblock: str, vxid: int | None = None, zone: int | None = None
                ) -> NetworkSpec:
        vxid = vxid or len(self.snap.networks) + 1
        spec = NetworkSpec(uuid=str(uuidlib.uuid4()), name=f"n{vxid}", namespace="test",
                           netblock=netblock, vxid=vxid)
        self.snap.networks[spec.uuid] = (spec, 1)
        self.zones[vxid] = zone or vxid
        bridge = self.names.bridge(vxid)
        ip("link", "add", bridge, "type", "bridge", netns=self.netns)
        ip("link", "set", bridge, "up", netns=self.netns)
        return spec

    def add_group(self, found: SecurityGroup) -> SecurityGroup:
        self.snap.groups[found.uuid] = found
        return found

    def add_address_set(self, name: str, *cidrs: str) -> AddressSet:
        found = AddressSet(uuid=str(uuidlib.uuid4()), name=name, namespace="test",
                           cidrs=list(cidrs))
        self.snap.address_sets[found.uuid] = found
        return found

    def guest(self, network: NetworkSpec, address: str, *groups: SecurityGroup,
              port_security: bool = True, mac: str | None = None) -> Guest:
        index = len(self.guests) + 1
        mac = mac or f"02:5e:00:00:{network.vxid:02x}:{index:02x}"
        instance = InstanceSpec(uuid=str(uuidlib.uuid4()), name=f"g{index}", namespace="test",
                                cpus=1, memory=64, disks=[Disk(device="vda", size_gb=1)],
                                node=NODE)
        iface = InterfaceSpec(uuid=str(uuidlib.uuid4()), network_uuid=network.uuid,
                              instance_uuid=instance.uuid, namespace="test", order=0,
                              macaddr=mac, ipv4=address,
                              security_groups=[g.uuid for g in groups],
                              port_security=port_security)
        self.snap.instances[instance.uuid] = instance
        self.snap.interfaces[iface.uuid] = iface
        netns = f"{self.tag}-g{index}"
        self._netns(netns)
        tap = self.names.tap(iface.uuid)
        ip("link", "add", tap, "netns", self.netns, "type", "veth", "peer", "name", "eth0",
           "netns", netns)
        ip("link", "set", tap, "master", self.names.bridge(network.vxid), "up", netns=self.netns)
        prefix = network.netblock.split("/")[1]
        ip("link", "set", "eth0", "address", mac, netns=netns)
        ip("addr", "add", f"{address}/{prefix}", "dev", "eth0", netns=netns)
        ip("link", "set", "eth0", "up", netns=netns)
        made = Guest(netns=netns, iface=iface, address=address)
        self.guests.append(made)
        return made

    def foreign(self, network: NetworkSpec, address: str, name: str | None = None) -> Guest:
        """A port in the network's bridge that no interface names."""
        index = len(self.guests) + 1
        netns = f"{self.tag}-g{index}"
        self._netns(netns)
        port = name or f"x{secrets.token_hex(3)}"
        ip("link", "add", port, "netns", self.netns, "type", "veth", "peer", "name", "eth0",
           "netns", netns)
        ip("link", "set", port, "master", self.names.bridge(network.vxid), "up", netns=self.netns)
        ip("addr", "add", f"{address}/{network.netblock.split('/')[1]}", "dev", "eth0",
           netns=netns)
        ip("link", "set", "eth0", "up", netns=netns)
        made = Guest(netns=netns, iface=InterfaceSpec(
            uuid=str(uuidlib.uuid4()), network_uuid=network.uuid, instance_uuid="", namespace="",
            order=0, macaddr="", ipv4=address), address=address)
        self.guests.append(made)
        return made

    def set_groups(self, guest: Guest, *groups: SecurityGroup) -> None:
        guest.iface = guest.iface.replace(security_groups=[g.uuid for g in groups])
        self.snap.interfaces[guest.iface.uuid] = guest.iface

    def remove(self, guest: Guest) -> None:
        """The guest's interface gone from the records (its veth stays, unfiltered no more)."""
        del self.snap.interfaces[guest.iface.uuid]
        del self.snap.instances[guest.iface.instance_uuid]

    def serve(self, guest: Guest, port: int) -> EchoServer:
        server = EchoServer(guest, port)
        self.servers.append(server)
        return server

    # --- the agent's filter ---------------------------------------------------------------

    def apply(self) -> policy.Policy:
        """What the agent's pass does: build the policy, apply it, end the
        connections it no longer allows."""
        built = policy.build(self.snap, node=NODE, names=self.names, zones=self.zones,
                             wanted_networks=list(self.snap.networks), network_node=False,
                             previous=self.applied)
        self.firewall.apply(built)
        self.firewall.cut(built)
        self.applied = built
        return built

    def ruleset(self, *flags: str) -> str:
        return in_netns(self.netns, "nft", *flags, "list", "ruleset").stdout

    def conntrack(self) -> str:
        return in_netns(self.netns, "conntrack", "-L", "-f", "ipv4").stdout

    def close(self) -> None:
        for server in self.servers:
            server.close()
        for name in reversed(self.namespaces):
            ip("netns", "del", name, check=False)
        self.namespaces.clear()


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.1) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


class LiveFlow:
    """A TCP connection kept busy: an echo every ``interval``, counting the
    ones that came back and the ones that did not (each waits up to a second)."""

    def __init__(self, client: socket.socket, interval: float = 0.1):
        self.client = client
        self.client.settimeout(1.0)
        self.interval = interval
        self.ok = 0
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if echo(self.client):
                self.ok += 1
            else:
                self.failed += 1
            time.sleep(self.interval)

    def settle(self, seconds: float = 0.5) -> tuple[int, int]:
        """(echoes answered, unanswered) after another ``seconds``."""
        time.sleep(seconds)
        return self.ok, self.failed

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)
        self.client.close()
