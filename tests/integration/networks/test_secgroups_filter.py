"""The node agent's security group filter, on a pseudo-hypervisor with
pseudo-guests (network namespaces, tests.support.pseudoguests): the cases of
reference/security-groups.md that need many ports or exact timing, driven
through the agent's own policy, nftables rendering and conntrack cleanup.
Everything happens inside namespaces the test makes and removes."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from cloudstate.model import SecurityRule
from nodeagent.net import conntrack
from nodeagent.net.nftables import NftError
from tests.support.pseudoguests import (
    Guest,
    LiveFlow,
    PseudoHost,
    group,
    rule,
    sock,
    wait_until,
)

pytestmark = pytest.mark.integration
# linux/in.h: set don't-fragment on what a socket sends (Python names neither).
IP_MTU_DISCOVER, IP_PMTUDISC_DO = 10, 2


@pytest.fixture
def host() -> Iterator[PseudoHost]:
    if not conntrack.available():
        pytest.fail("the conntrack tool is missing: apt-get install conntrack")
    made = PseudoHost().start()
    try:
        yield made
    finally:
        made.close()


def anything_out() -> SecurityRule:
    return rule("egress")


def chain_handles(host: PseudoHost) -> list[str]:
    """The rules of the group chains, with their handles."""
    listed = host.ruleset("-a")
    return [line.strip() for line in listed.splitlines() if "# handle" in line
            and "@rg_" in line]


def datagram(sender: Guest, receiver: Guest, port: int, size: int) -> int:
    """Bytes of one UDP datagram of ``size`` that arrived (0: none)."""
    listener = sock(receiver.netns, kind=socket.SOCK_DGRAM)
    listener.bind(("0.0.0.0", port))
    listener.settimeout(1.5)
    out = sock(sender.netns, kind=socket.SOCK_DGRAM)
    if size <= 1472:
        out.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
    try:
        out.sendto(b"x" * size, (receiver.address, port))
        try:
            return len(listener.recvfrom(8000)[0])
        except TimeoutError:
            return 0
    finally:
        listener.close()
        out.close()


def test_ingress_allow_and_deny_both_ways_stateful(host: PseudoHost) -> None:
    """Case 2: web allows tcp/8080 from 10.77.0.0/28 only and has no egress
    rule. A client inside the CIDR connects and gets its replies; one
    outside, and port 2222, time out; web opens nothing outwards."""
    net = host.network("10.77.0.0/24")
    web = host.add_group(group("web", rule("ingress", protocol="tcp", ports="8080",
                                           remote_cidrs=["10.77.0.0/28"])))
    clients = host.add_group(group("clients", anything_out(),
                                   rule("ingress", protocol="tcp", ports="9000")))
    server = host.guest(net, "10.77.0.5", web)
    inside = host.guest(net, "10.77.0.11", clients)
    outside = host.guest(net, "10.77.0.100", clients)
    for port in (8080, 2222):
        host.serve(server, port)
    host.serve(inside, 9000)
    host.apply()
    assert inside.reaches(server.address, 8080)
    assert not outside.reaches(server.address, 8080)
    assert not inside.reaches(server.address, 2222)
    # No egress rule: the web guest can't open a connection out, even to a
    # port the other side lets in.
    assert not server.reaches(inside.address, 9000)
    # Replies flowed above; a long exchange keeps flowing too.
    client = inside.connect(server.address, 8080)
    assert client is not None
    flow = LiveFlow(client)
    try:
        assert flow.settle(1.0)[1] == 0
    finally:
        flow.close()


def test_a_remote_group_member_comes_and_goes_by_set_elements(host: PseudoHost) -> None:
    """Case 3: "tcp 2222 from group A". Adding C to A opens it at once by a
    set element (no rule's handle changes); taking C out refuses new
    connections and cuts C's open one, and only C's."""
    net = host.network("10.78.0.0/24")
    members = host.add_group(group("a", anything_out()))
    other = host.add_group(group("other", anything_out()))
    target = host.add_group(group("target", rule("ingress", protocol="tcp", ports="2222",
                                                 remote_group=members.uuid)))
    server = host.guest(net, "10.78.0.5", target)
    member = host.guest(net, "10.78.0.6", members)
    newcomer = host.guest(net, "10.78.0.7", other)
    host.serve(server, 2222)
    host.apply()
    assert member.reaches(server.address, 2222)
    assert not newcomer.reaches(server.address, 2222)
    before = chain_handles(host)

    host.set_groups(newcomer, other, members)
    started = time.monotonic()
    host.apply()
    assert wait_until(lambda: newcomer.reaches(server.address, 2222), 2.0)
    assert time.monotonic() - started < 2.0
    assert chain_handles(host) == before, "a member's arrival changed rules, not elements"
    assert "10.78.0.7" in host.ruleset()

    kept = LiveFlow(member.connect(server.address, 2222))  # type: ignore[arg-type]
    cut = LiveFlow(newcomer.connect(server.address, 2222))  # type: ignore[arg-type]
    try:
        assert kept.settle()[1] == 0 and cut.settle()[1] == 0
        host.set_groups(newcomer, other)
        host.apply()
        assert not newcomer.reaches(server.address, 2222)
        ok_before = cut.ok
        cut.settle(2.0)
        assert cut.failed > 0 and cut.ok <= ok_before + 1, "C's open connection was not cut"
        assert kept.settle(1.0)[1] == 0, "another member's connection was cut too"
    finally:
        kept.close()
        cut.close()


def test_established_flows_survive_every_reapply(host: PseudoHost) -> None:
    """Case 4: a busy connection over rule R loses no echo through the same
    state applied again, an unrelated rule added and removed, and a whole
    replacement of the tables (as after an agent restart)."""
    net = host.network("10.79.0.0/24")
    server_group = host.add_group(group("s", rule("ingress", protocol="tcp", ports="7000")))
    client_group = host.add_group(group("c", anything_out()))
    server = host.guest(net, "10.79.0.5", server_group)
    client = host.guest(net, "10.79.0.6", client_group)
    host.serve(server, 7000)
    host.apply()
    flow = LiveFlow(client.connect(server.address, 7000))  # type: ignore[arg-type]
    try:
        assert host.firewall.apply(host.applied) is False  # type: ignore[arg-type]
        host.apply()
        extra = rule("ingress", protocol="udp", ports="53")
        host.add_group(server_group.replace(rules=[*server_group.rules, extra], generation=2))
        host.apply()
        host.add_group(server_group.replace(generation=3))
        host.apply()
        # A fresh filter (an agent that restarted) replaces the tables whole.
        from nodeagent.net.firewall import Firewall

        host.firewall = Firewall(host.names.filter_table, host.tag, netns=host.netns)
        host.apply()
        ok, failed = flow.settle(1.0)
        assert failed == 0 and ok > 10, (ok, failed)
    finally:
        flow.close()


def test_removing_a_rule_ends_only_the_flows_it_allowed(host: PseudoHost) -> None:
    """Case 5: with R1 (tcp 2222 from A's /32) and R2 (tcp 2222 from B's
    /32) and R3 (tcp 3333 from anywhere), removing R1 refuses A's new
    connections to 2222 and ends A's open one; B's 2222 and A's 3333 live on."""
    net = host.network("10.76.0.0/24")
    r1 = rule("ingress", protocol="tcp", ports="2222", remote_cidrs=["10.76.0.11/32"])
    r2 = rule("ingress", protocol="tcp", ports="2222", remote_cidrs=["10.76.0.12/32"])
    r3 = rule("ingress", protocol="tcp", ports="3333")
    served = host.add_group(group("served", r1, r2, r3))
    out = host.add_group(group("out", anything_out()))
    server = host.guest(net, "10.76.0.5", served)
    a = host.guest(net, "10.76.0.11", out)
    b = host.guest(net, "10.76.0.12", out)
    for port in (2222, 3333):
        host.serve(server, port)
    host.apply()
    flows = {name: LiveFlow(guest.connect(server.address, port))  # type: ignore[arg-type]
             for name, guest, port in (("a2222", a, 2222), ("b2222", b, 2222),
                                       ("a3333", a, 3333))}
    try:
        for flow in flows.values():
            assert flow.settle(0.3)[1] == 0
        host.add_group(served.replace(rules=[r2, r3], generation=2))
        host.apply()
        assert not a.reaches(server.address, 2222)
        time.sleep(2.0)
        assert flows["a2222"].failed > 0
        assert flows["b2222"].failed == 0 and flows["a3333"].failed == 0
        assert "dport=2222" in host.conntrack()  # b's, still tracked
        assert not re.search(r"src=10\.76\.0\.11 dst=10\.76\.0\.5 sport=\d+ dport=2222",
                             host.conntrack())
    finally:
        for flow in flows.values():
            flow.close()


def test_a_guest_can_only_be_itself(host: PseudoHost) -> None:
    """Case 6: another address, another MAC, a gratuitous ARP for someone
    else's address, a DHCP server's answer and IPv6 are all dropped; its own
    identity works again afterwards."""
    net = host.network("10.75.0.0/24")
    everyone = host.add_group(group("all", anything_out(), rule("ingress")))
    victim = host.guest(net, "10.75.0.5", everyone)
    spoofer = host.guest(net, "10.75.0.6", everyone)
    host.serve(victim, 5000)
    host.apply()
    assert spoofer.reaches(victim.address, 5000)
    victim.run("ip", "neigh", "flush", "all")

    spoofer.run("ip", "addr", "add", "10.75.0.66/24", "dev", "eth0")
    spoofer.run("ip", "addr", "del", "10.75.0.6/24", "dev", "eth0")
    assert not spoofer.reaches(victim.address, 5000)
    spoofer.run("ip", "addr", "add", "10.75.0.6/24", "dev", "eth0")
    spoofer.run("ip", "addr", "del", "10.75.0.66/24", "dev", "eth0")
    assert wait_until(lambda: spoofer.reaches(victim.address, 5000))

    spoofer.run("ip", "link", "set", "eth0", "address", "02:5e:00:00:ff:ff")
    spoofer.run("ip", "neigh", "flush", "all")
    assert not spoofer.reaches(victim.address, 5000)
    spoofer.run("ip", "link", "set", "eth0", "address", spoofer.iface.macaddr)
    assert wait_until(lambda: spoofer.reaches(victim.address, 5000))

    # Gratuitous ARP claiming a third guest's address: the victim never hears it.
    victim.run("ip", "neigh", "flush", "all")
    spoofer.run("ip", "addr", "add", "10.75.0.77/24", "dev", "eth0")
    spoofer.run("busybox", "arping", "-U", "-c", "2", "-I", "eth0", "10.75.0.77")
    assert "10.75.0.77" not in victim.run("ip", "neigh", "show")
    spoofer.run("ip", "addr", "del", "10.75.0.77/24", "dev", "eth0")

    # A DHCP answer (from port 67) never reaches the victim's client port.
    listener = sock(victim.netns, kind=socket.SOCK_DGRAM)
    listener.bind(("0.0.0.0", 68))
    listener.settimeout(1.0)
    rogue = sock(spoofer.netns, kind=socket.SOCK_DGRAM)
    rogue.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    rogue.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
    rogue.bind(("0.0.0.0", 67))
    try:
        rogue.sendto(b"OFFER", ("255.255.255.255", 68))
        rogue.sendto(b"OFFER", (victim.address, 68))
        with pytest.raises(TimeoutError):
            listener.recvfrom(64)
    finally:
        listener.close()
        rogue.close()

    # IPv6 (link-local) between them goes nowhere.
    victim_ll = re.search(r"inet6 (fe80::[0-9a-f:]+)/64",
                          victim.run("ip", "-6", "addr", "show", "dev", "eth0"))
    if victim_ll:  # a host with IPv6 disabled has nothing to leak
        assert "0 packets received" in spoofer.run(
            "busybox", "ping6", "-c", "2", "-W", "1", "-I", "eth0", victim_ll.group(1))


def test_a_deleted_guest_leaves_nothing(host: PseudoHost) -> None:
    """Case 7: once its interface is gone, no chain, set element or map
    entry names its tap, MAC or address, no tracked connection holds its
    address, and a new guest with its address gets only its own policy."""
    net = host.network("10.74.0.0/24")
    talkative = host.add_group(group("t", anything_out(), rule("ingress")))
    quiet = host.add_group(group("q", anything_out()))
    peer = host.add_group(group("p", anything_out(), rule("ingress",
                                                          remote_group=talkative.uuid)))
    server = host.guest(net, "10.74.0.5", talkative, peer)
    leaving = host.guest(net, "10.74.0.6", talkative)
    host.serve(server, 4000)
    host.serve(leaving, 4000)
    host.apply()
    assert leaving.reaches(server.address, 4000)
    flow = LiveFlow(leaving.connect(server.address, 4000))  # type: ignore[arg-type]
    try:
        host.remove(leaving)
        host.apply()
        tap = host.names.tap(leaving.iface.uuid)
        listed = host.ruleset()
        for trace in (tap, leaving.iface.macaddr, leaving.address):
            assert trace not in listed, trace
        assert leaving.address not in host.conntrack()
        # Someone else, with its address, in another group: only its own policy.
        again = host.guest(net, leaving.address, quiet)
        host.apply()
        assert not server.reaches(again.address, 4000)
        host.serve(again, 4001)
        assert again.reaches(server.address, 4000)
    finally:
        flow.close()


def test_unknown_ports_pass_nothing_and_a_refused_apply_keeps_the_rules(
        host: PseudoHost) -> None:
    """Case 8: a port no interface names, whatever its name, neither sends
    nor receives IP or ARP through a managed bridge; a policy nft refuses
    changes nothing, and a group whose rules fail the agent's check keeps
    the chains it had, with the reason on its ports."""
    net = host.network("10.73.0.0/24")
    open_group = host.add_group(group("open", anything_out(), rule("ingress")))
    guest = host.guest(net, "10.73.0.5", open_group)
    intruder = host.foreign(net, "10.73.0.9")
    lookalike = host.foreign(net, "10.73.0.10", name=host.names.tap("ffffffff-0000"))
    host.serve(guest, 6000)
    host.apply()
    for stranger in (intruder, lookalike):
        assert not stranger.reaches(guest.address, 6000)
        stranger.run("busybox", "arping", "-c", "1", "-w", "1", "-I", "eth0", guest.address)
    assert "10.73.0.9" not in guest.run("ip", "neigh", "show")
    assert "10.73.0.10" not in guest.run("ip", "neigh", "show")

    # nft refuses a policy (a MAC it can't parse): the tables stay as they were.
    before = host.ruleset()
    broken = host.applied.ports[0].__class__(  # type: ignore[union-attr]
        **{**host.applied.ports[0].__dict__, "mac": "not-a-mac"})  # type: ignore[union-attr]
    with pytest.raises(NftError):
        host.firewall.apply(host.applied.__class__(  # type: ignore[union-attr]
            **{**host.applied.__dict__, "ports": (broken,)}))  # type: ignore[union-attr]
    assert host.ruleset() == before

    # A rule etcd holds but no portal would have written: the group keeps
    # its applied chains and its port says why.
    bad = open_group.replace(rules=[*open_group.rules, rule("ingress", protocol="tcp",
                                                            ports="99999")], generation=2)
    host.add_group(bad)
    applied = host.apply()
    assert applied.ports[0].error and "ports" in applied.ports[0].error
    assert applied.ports[0].groups == {open_group.uuid: 1}
    assert host.names.tap(guest.iface.uuid) in host.ruleset()
    client = host.guest(net, "10.73.0.6", open_group)
    host.add_group(open_group)
    host.apply()
    assert client.reaches(guest.address, 6000)


def test_same_ranges_apart_and_port_security_off(host: PseudoHost) -> None:
    """Case 9: two networks with the same range carry the same 5-tuple at
    once, each tracked in its own zone; a port with filtering off is
    unfiltered (even sending from another address) and its neighbours are
    filtered as before."""
    blue = host.network("10.72.0.0/24", zone=101)
    green = host.network("10.72.0.0/24", zone=102)
    both = host.add_group(group("both", anything_out(), rule("ingress", protocol="tcp",
                                                             ports="8000")))
    servers = [host.guest(net, "10.72.0.5", both) for net in (blue, green)]
    clients = [host.guest(net, "10.72.0.6", both) for net in (blue, green)]
    for server in servers:
        host.serve(server, 8000)
    host.apply()
    sockets = []
    for client in clients:
        made = sock(client.netns)
        made.bind((client.address, 41000))
        made.settimeout(2)
        made.connect(("10.72.0.5", 8000))
        sockets.append(made)
    try:
        listed = host.conntrack()
        same = re.findall(r"src=10\.72\.0\.6 dst=10\.72\.0\.5 sport=41000 dport=8000 .*zone=(\d+)",
                          listed)
        assert sorted(same) == ["101", "102"], listed
        flows = [LiveFlow(s) for s in sockets]
        assert all(f.settle()[1] == 0 for f in flows)
        for flow in flows:
            flow.close()
    finally:
        for made in sockets:
            made.close()

    # Filtering off on one port: it reaches what its neighbours can't, and
    # may even send from an address it does not have.
    free = host.guest(blue, "10.72.0.7", port_security=False)
    guarded = host.guest(blue, "10.72.0.8", host.add_group(group("g", anything_out())))
    for guest in (free, guarded):
        host.serve(guest, 9999)
    host.apply()
    assert clients[0].reaches(free.address, 9999)
    assert not clients[0].reaches(guarded.address, 9999)
    free.run("ip", "addr", "add", "10.72.0.70/24", "dev", "eth0")
    spoofed = sock(free.netns)
    spoofed.bind(("10.72.0.70", 0))
    spoofed.settimeout(2)
    try:
        spoofed.connect((servers[0].address, 8000))
    finally:
        spoofed.close()
    assert servers[0].reaches(free.address, 9999)


def test_ipv6_is_dropped_mtu_and_fragments(host: PseudoHost) -> None:
    """Case 10 (IPv4 networks): IPv6 between guests is dropped whatever the
    rules; a don't-fragment ping at the link's MTU passes; a fragmented UDP
    datagram is judged whole: let in on an allowed port, not on another."""
    net = host.network("10.71.0.0/24")
    udp = host.add_group(group("udp", anything_out(),
                               rule("ingress", protocol="udp", ports="5353"),
                               rule("ingress", protocol="icmp")))
    receiver = host.guest(net, "10.71.0.5", udp)
    sender = host.guest(net, "10.71.0.6", udp)
    host.apply()
    # 1472 bytes of UDP payload make a 1500-byte packet: the link's MTU,
    # sent with don't-fragment; 4000 bytes go as three fragments.
    received = {(size, port): datagram(sender, receiver, port, size)
                for size in (1472, 4000) for port in (5353, 5354)}
    assert received == {(1472, 5353): 1472, (4000, 5353): 4000,
                        (1472, 5354): 0, (4000, 5354): 0}
    ll = re.search(r"inet6 (fe80::[0-9a-f:]+)/64",
                   receiver.run("ip", "-6", "addr", "show", "dev", "eth0"))
    if ll:
        result = subprocess.run(["ip", "netns", "exec", sender.netns, "busybox", "ping6", "-c",
                                 "2", "-W", "1", "-I", "eth0", ll.group(1)],
                                capture_output=True, text=True, timeout=20)
        assert result.returncode != 0, result.stdout
