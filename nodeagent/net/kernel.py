"""Links, namespaces and addresses, through pyroute2 (netlink).

Every call here is idempotent: it looks at what the kernel has and changes
only what differs, so the network reconciler can run it after a crash at any
point. Calls block (netlink round trips of well under a millisecond, a few
for a namespace), so the reconciler runs them in a worker thread, one at a
time.

"Our" namespace is the one the agent runs in: the node's. On a machine where
libvirtd lives in another namespace than the agent (a simulated node in the
tests), guests' taps appear there and are moved over (``adopt_tap``).

Work inside another namespace is done by switching the calling thread into
it (setns affects one thread), never by forking: the agent has gRPC and
libvirt threads, and a forked child of such a process is not safe to run
Python in. Namespaces are made and removed with iproute2's ``ip netns``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute, NetlinkError

ZERO_MAC = "00:00:00:00:00:00"
_ETH_P_ARP = 0x0806
NETNS_DIR = Path("/run/netns")
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class KernelError(Exception):
    """The kernel refused a change; the message says which and why."""


class MissingBridge(KernelError):
    """A link was to go into a bridge this node has not built (yet)."""


@dataclass(frozen=True)
class Address:
    address: str
    prefixlen: int


@dataclass(frozen=True)
class Route:
    destination: str  # a CIDR, or "default"
    gateway: str | None = None


def _first(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def _link(ipr: IPRoute, index: int) -> object:
    return ipr.get_links(index)[0]


def _kind(link: object) -> str | None:
    info = link.get("IFLA_LINKINFO")  # type: ignore[attr-defined]
    return info.get("IFLA_INFO_KIND") if info else None


@contextlib.contextmanager
def _ours() -> Iterator[IPRoute]:
    ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns: {os.strerror(error)}")


@contextlib.contextmanager
def _thread_in(path: str | Path) -> Iterator[None]:
    """Run the calling thread inside the network namespace at ``path``."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(path, os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            try:
                _setns(home)
            except OSError:
                # A worker thread stuck in another namespace would do later
                # work in the wrong place: better to stop the agent.
                os.abort()
    finally:
        os.close(home)


@contextlib.contextmanager
def _inside(name: str | Path) -> Iterator[IPRoute]:
    """An IPRoute on the namespace ``name`` (ours: a name under /run/netns;
    or a path such as /proc/<pid>/ns/net)."""
    path = name if str(name).startswith("/") else NETNS_DIR / str(name)
    if not Path(path).exists():
        raise KernelError(f"network namespace {name} does not exist")
    with _thread_in(path):
        ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def _netns_fd(name: str) -> int:
    return os.open(NETNS_DIR / name, os.O_RDONLY)


def _wrap(what: str, exc: NetlinkError) -> KernelError:
    return KernelError(f"{what}: {os.strerror(exc.code) if exc.code else exc}")


# --- links in our namespace ------------------------------------------------------------------


def links() -> dict[str, str | None]:
    """Every link of our namespace: name -> kind (bridge, vxlan, veth, tun, ...)."""
    with _ours() as ipr:
        return {link.get("ifname"): _kind(link) for link in ipr.get_links()}


def delete_link(name: str) -> bool:
    with _ours() as ipr:
        index = _first(ipr, name)
        if index is None:
            return False
        try:
            ipr.link("del", index=index)
        except NetlinkError as exc:
            if exc.code != errno.ENODEV:
                raise _wrap(f"deleting {name}", exc) from exc
        return True


def ensure_bridge(name: str, mtu: int) -> None:
    with _ours() as ipr:
        index = _first(ipr, name)
        if index is not None and _kind(_link(ipr, index)) != "bridge":
            ipr.link("del", index=index)
            index = None
        if index is None:
            try:
                ipr.link("add", ifname=name, kind="bridge", br_stp_state=0, br_forward_delay=0)
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise _wrap(f"creating bridge {name}", exc) from exc
            index = _first(ipr, name)
        ipr.link("set", index=index, mtu=mtu, state="up")
    _l2_only(name)


def _l2_only(bridge: str) -> None:
    """Keep this node's own IP stack off a bridge's segment. Otherwise the
    node answers ARP there for every address it owns (Linux's weak host
    model): guests would see the node's addresses, and a floating address
    that happens to equal one of them would be claimed by the node too."""
    for path, value in ((f"/proc/sys/net/ipv4/conf/{bridge}/arp_ignore", "8"),
                        (f"/proc/sys/net/ipv6/conf/{bridge}/disable_ipv6", "1")):
        try:
            with open(path, "w") as knob:
                knob.write(value)
        except FileNotFoundError:
            pass  # IPv6 disabled on this host: nothing to turn off
        except OSError as exc:
            raise KernelError(f"setting {path}: {exc.strerror}") from exc


def ensure_vxlan(name: str, *, vxid: int, local: str, port: int, mtu: int, bridge: str) -> None:
    """A VXLAN interface for ``vxid`` sending from ``local``, in ``bridge``.

    No multicast group: floods go to every peer in the forwarding table
    (head-end replication), which ``set_flood_peers`` keeps current.
    """
    with _ours() as ipr:
        index = _first(ipr, name)
        if index is not None:
            link = _link(ipr, index)
            data = (link.get("IFLA_LINKINFO") or {}).get("IFLA_INFO_DATA") or {}  # type: ignore[attr-defined]
            same = (_kind(link) == "vxlan" and data.get("IFLA_VXLAN_ID") == vxid
                    and data.get("IFLA_VXLAN_LOCAL") == local
                    and data.get("IFLA_VXLAN_PORT") == port)
            if not same:
                ipr.link("del", index=index)
                index = None
        if index is None:
            try:
                ipr.link("add", ifname=name, kind="vxlan", vxlan_id=vxid, vxlan_local=local,
                         vxlan_port=port, vxlan_learning=1)
            except NetlinkError as exc:
                raise _wrap(f"creating VXLAN {name} (id {vxid}, from {local}:{port})",
                            exc) from exc
            index = _first(ipr, name)
        master = _first(ipr, bridge)
        ipr.link("set", index=index, master=master, mtu=mtu, state="up")


def set_flood_peers(vxlan: str, peers: set[str]) -> bool:
    """Make the all-zero forwarding entries (where broadcasts and unknown
    destinations go) exactly one per peer node; True if any changed."""
    with _ours() as ipr:
        index = _first(ipr, vxlan)
        if index is None:
            raise KernelError(f"{vxlan} does not exist")
        entries = [(entry.get("NDA_LLADDR"), entry.get("NDA_DST"))
                   for entry in ipr.fdb("dump", ifindex=index) if entry.get("NDA_DST")]
        present = {dst for mac, dst in entries if mac == ZERO_MAC}
        for peer in sorted(peers - present):
            ipr.fdb("append", ifindex=index, lladdr=ZERO_MAC, dst=peer)
        # Flood entries of nodes that left, and what was learned behind them.
        for mac, dst in entries:
            if dst not in peers:
                try:
                    ipr.fdb("del", ifindex=index, lladdr=mac, dst=dst)
                except NetlinkError as exc:
                    if exc.code != errno.ENOENT:  # aged out meanwhile
                        raise
        return present != peers


def flood_peers(vxlan: str) -> set[str]:
    with _ours() as ipr:
        index = _first(ipr, vxlan)
        if index is None:
            return set()
        return {
            entry.get("NDA_DST") for entry in ipr.fdb("dump", ifindex=index)
            if entry.get("NDA_LLADDR") == ZERO_MAC and entry.get("NDA_DST")
        }


def enslave(name: str, bridge: str, mtu: int | None = None) -> bool:
    """Put an existing link into ``bridge`` and bring it up; False if it
    does not exist (yet)."""
    with _ours() as ipr:
        index = _first(ipr, name)
        master = _first(ipr, bridge)
        if index is None:
            return False
        if master is None:
            raise MissingBridge(f"bridge {bridge} does not exist")
        link = _link(ipr, index)
        changes: dict[str, object] = {}
        if link.get("IFLA_MASTER") != master:  # type: ignore[attr-defined]
            changes["master"] = master
        if mtu and link.get("IFLA_MTU") != mtu:  # type: ignore[attr-defined]
            changes["mtu"] = mtu
        if link.get("IFLA_OPERSTATE") == "DOWN" or not (link["flags"] & 1):  # type: ignore[index]
            changes["state"] = "up"
        if changes:
            ipr.link("set", index=index, **changes)
        return True


def master_of(name: str) -> str | None:
    with _ours() as ipr:
        index = _first(ipr, name)
        if index is None:
            return None
        master = _link(ipr, index).get("IFLA_MASTER")  # type: ignore[attr-defined]
        return _link(ipr, master).get("ifname") if master else None  # type: ignore[attr-defined]


def adopt_tap(name: str, from_netns: str) -> bool:
    """Move a tap libvirt made in ``from_netns`` (a path) into ours; False
    if it is not there. qemu keeps its file descriptor: the device moves
    with its traffic."""
    try:
        with _inside(from_netns) as source:
            index = _first(source, name)
            if index is None:
                return False
            source.link("set", index=index, net_ns_pid=os.getpid())
            return True
    except OSError as exc:
        raise KernelError(f"can't move {name} from {from_netns}: {exc}") from exc


# --- namespaces ---------------------------------------------------------------------------------


def namespaces(prefix: str) -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(name for name in os.listdir(NETNS_DIR) if name.startswith(prefix))


def _ip_netns(*args: str) -> None:
    result = subprocess.run(["ip", "netns", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise KernelError(f"ip netns {' '.join(args)}: {result.stderr.strip()}")


def ensure_netns(name: str) -> None:
    if not (NETNS_DIR / name).exists():
        _ip_netns("add", name)
    with _inside(name) as ns:
        lo = _first(ns, "lo")
        ns.link("set", index=lo, state="up")


def remove_netns(name: str) -> None:
    """Remove a namespace; every link inside goes with it (a veth's other
    end too)."""
    if (NETNS_DIR / name).exists():
        _ip_netns("delete", name)


def ensure_veth_into(outer: str, namespace: str, inner: str, *, bridge: str | None,
                     mtu: int) -> None:
    """A veth pair: ``outer`` here (in ``bridge``), ``inner`` in ``namespace``."""
    with _ours() as ipr:
        index = _first(ipr, outer)
        if index is not None:
            with _inside(namespace) as ns:
                if _first(ns, inner) is None:
                    # Its peer is elsewhere (left from an earlier namespace): start over.
                    ipr.link("del", index=index)
                    index = None
        if index is None:
            fd = _netns_fd(namespace)
            try:
                ipr.link("add", ifname=outer, kind="veth",
                         peer={"ifname": inner, "net_ns_fd": fd})
            except NetlinkError as exc:
                raise _wrap(f"creating veth {outer} into {namespace}", exc) from exc
            finally:
                os.close(fd)
            index = _first(ipr, outer)
        changes: dict[str, object] = {"mtu": mtu, "state": "up"}
        if bridge is not None:
            changes["master"] = _first(ipr, bridge)
        ipr.link("set", index=index, **changes)


def configure_inside(namespace: str, name: str, *, addresses: list[Address], mtu: int,
                     routes: tuple[Route, ...] | list[Route] = ()) -> list[Address]:
    """Give ``name`` in ``namespace`` exactly these IPv4 addresses and
    routes; returns the addresses it added."""
    with _inside(namespace) as ns:
        index = _first(ns, name)
        if index is None:
            raise KernelError(f"{name} is missing in {namespace}")
        ns.link("set", index=index, mtu=mtu, state="up")
        present = {
            Address(a.get("IFA_ADDRESS"), a["prefixlen"])
            for a in ns.get_addr(index=index, family=2)
        }
        wanted = set(addresses)
        for stale in present - wanted:
            ns.addr("del", index=index, address=stale.address, prefixlen=stale.prefixlen)
        added = sorted(wanted - present, key=lambda a: (a.prefixlen, a.address))
        for missing in added:
            ns.addr("add", index=index, address=missing.address, prefixlen=missing.prefixlen)
        for route in routes:
            fields: dict[str, object] = {"oif": index}
            if route.destination == "default":
                fields["dst"] = "0.0.0.0/0"
            else:
                fields["dst"] = route.destination
            if route.gateway:
                fields["gateway"] = route.gateway
            else:
                fields["scope"] = 253  # link
            ns.route("replace", **fields)
        return added


# The routing protocol number marking the host routes of routed addresses,
# so a pass can tell them from every other route and remove stale ones.
ROUTED_PROTO = 77


def ensure_host_routes(namespace: str, name: str, addresses: set[str]) -> None:
    """Exactly these /32 routes out of ``name`` in ``namespace`` (ours, by
    their protocol number); other routes are left alone."""
    with _inside(namespace) as ns:
        index = _first(ns, name)
        if index is None:
            raise KernelError(f"{name} is missing in {namespace}")
        present = {route.get_attr("RTA_DST") for route in ns.get_routes(family=2, table=254)
                   if route["proto"] == ROUTED_PROTO}
        try:
            for stale in present - addresses:
                ns.route("del", dst=f"{stale}/32", oif=index, table=254, proto=ROUTED_PROTO,
                         scope=253)
            for missing in addresses - present:
                ns.route("replace", dst=f"{missing}/32", oif=index, proto=ROUTED_PROTO,
                         scope=253)
        except NetlinkError as exc:
            raise _wrap(f"routing in {namespace}", exc) from exc


def ensure_proxy_neighbours(namespace: str, name: str, addresses: set[str]) -> None:
    """Answer ARP on ``name`` for exactly these addresses (routed elsewhere
    from there), so the uplink's router finds them behind this namespace."""
    shown = subprocess.run(["ip", "-j", "-n", namespace, "neigh", "show", "proxy", "dev", name],
                           capture_output=True, text=True, timeout=30)
    if shown.returncode != 0:
        raise KernelError(f"listing proxy neighbours in {namespace}: {shown.stderr.strip()}")
    present = {entry["dst"] for entry in json.loads(shown.stdout or "[]")}
    for verb, wanted in (("del", present - addresses), ("add", addresses - present)):
        for address in sorted(wanted):
            result = subprocess.run(["ip", "-n", namespace, "neigh", verb, "proxy", address,
                                     "dev", name], capture_output=True, text=True, timeout=30)
            if result.returncode != 0:
                raise KernelError(f"proxy neighbour {address} in {namespace}: "
                                  f"{result.stderr.strip()}")


def announce(namespace: str, name: str, addresses: list[str]) -> None:
    """Send gratuitous ARPs for each address from ``name`` in ``namespace``.

    A floating address that moves (to another network's namespace, after a
    defloat and a float) changes MAC: neighbours that still remember the old
    one would send to nowhere until their entry expired (up to a minute).
    A link just brought up drops what is sent before it has carrier, so wait
    for that first, and say it twice.
    """
    if not addresses:
        return
    with _inside(namespace) as ns:
        index = _first(ns, name)
        deadline = time.monotonic() + 2.0
        while index is not None and time.monotonic() < deadline:
            if _link(ns, index).get("IFLA_OPERSTATE") == "UP":  # type: ignore[attr-defined]
                break
            time.sleep(0.02)
    with _thread_in(NETNS_DIR / namespace):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ARP))
    try:
        sock.bind((name, _ETH_P_ARP))
        mac = sock.getsockname()[4]
        for attempt in range(2):
            if attempt:
                time.sleep(0.2)
            for address in addresses:
                ip = socket.inet_aton(address)
                # Ethernet broadcast, then an ARP request whose sender and
                # target are both the address: "this address is at this MAC".
                frame = (b"\xff" * 6 + mac + struct.pack("!H", _ETH_P_ARP)
                         + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
                         + mac + ip + b"\x00" * 6 + ip)
                sock.send(frame)
    finally:
        sock.close()


def set_forwarding(namespace: str, enabled: bool) -> None:
    """IPv4 forwarding inside one of our namespaces (never the node's own)."""
    subprocess.run(
        ["ip", "netns", "exec", namespace, "sysctl", "-qw",
         f"net.ipv4.ip_forward={1 if enabled else 0}"],
        check=True, capture_output=True, timeout=10,
    )


def addresses_of(namespace: str, name: str) -> set[str]:
    with _inside(namespace) as ns:
        index = _first(ns, name)
        if index is None:
            return set()
        return {
            f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}" for a in ns.get_addr(index=index, family=2)
        }


def is_default_route_link(name: str) -> bool:
    """True if ``name`` carries a default route or an address of our
    namespace: it is a link the node itself uses, never an uplink to hand
    over to guests' traffic."""
    with _ours() as ipr:
        index = _first(ipr, name)
        if index is None:
            return False
        for route in ipr.get_default_routes(family=2):
            if route.get("RTA_OIF") == index:
                return True
        return bool(ipr.get_addr(index=index, family=2))


BRIDGE_NF_CALL = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")


def ensure_bridge_netfilter() -> None:
    """Bridged IPv4 passes the inet hooks (br_netfilter) in our namespace,
    where the security groups track connections: load the module if the
    kernel has it as one, and switch it on. Every bridge of the namespace
    is then seen by the inet hooks; ours only filter our own bridges."""
    if not BRIDGE_NF_CALL.exists():
        subprocess.run(["modprobe", "br_netfilter"], capture_output=True, timeout=30)
    try:
        if BRIDGE_NF_CALL.read_text().strip() != "1":
            BRIDGE_NF_CALL.write_text("1")
    except OSError as exc:
        raise KernelError(f"bridged traffic can't be filtered statefully here (br_netfilter: "
                          f"{exc.strerror}): security groups are not enforced") from exc
