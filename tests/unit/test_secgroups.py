"""Security groups without a kernel: what a valid rule is, what a policy
allows and forgets, how a change becomes the fewest nft commands, how
conntrack's lines are read, and what an interface's filtering state is."""

from __future__ import annotations

import uuid as uuidlib

import pytest

from cloudstate import secgroups, states
from cloudstate.model import (
    Disk,
    InstanceSpec,
    InterfaceObserved,
    InterfaceSpec,
    NetworkSpec,
    SecurityGroup,
    SecurityRule,
)
from cloudstate.validation import ValidationError
from nodeagent.net import conntrack, filterrules, policy
from nodeagent.net.names import NetNames
from nodeagent.net.policy import Flow
from nodeagent.net.snapshot import Snapshot

NAMES = NetNames("sfab12", "0000")


def test_rules_are_checked_and_made_canonical() -> None:
    rule = secgroups.check_rule({"direction": "ingress", "protocol": "6", "ports": "443,80,81-90",
                                 "remote": {"cidrs": ["10.0.0.5/8", "192.0.2.1"]}})
    assert (rule.protocol, rule.ports) == ("tcp", "80-90,443")
    assert rule.remote_cidrs == ("10.0.0.0/8", "192.0.2.1/32")
    assert secgroups.check_rule({"direction": "egress", "ports": None}).protocol == "any"
    assert secgroups.ports("1-65535") is None  # every port is no port list at all
    anywhere = secgroups.check_rule({"direction": "ingress",
                                     "remote": {"cidrs": ["0.0.0.0/0"]}})
    assert anywhere.remote_cidrs == ()
    assert secgroups.protocol("17") == "udp" and secgroups.protocol(132) == "132"
    for bad, message in [
        ({"direction": "in"}, "not ingress or egress"),
        ({"direction": "ingress", "protocol": 58}, "IPv6's"),
        ({"direction": "ingress", "protocol": "udp", "ports": list(range(1, 40))}, "at most 32"),
        ({"direction": "ingress", "protocol": "tcp", "ports": True}, "must be ports"),
        ({"direction": "ingress", "remote": {"group": ""}}, "must name a group"),
        ({"direction": "ingress", "remote": []}, "must be"),
    ]:
        with pytest.raises(ValidationError, match=message):
            secgroups.check_rule(bad)


def test_a_stored_rule_is_checked_again_and_described() -> None:
    good = SecurityRule(uuid="r1", direction="ingress", protocol="tcp", ports="22",
                        remote_cidrs=["10.0.0.0/8"])
    assert secgroups.recheck(good) is good
    with pytest.raises(ValidationError):
        secgroups.recheck(good.replace(ports="99999"))
    with pytest.raises(ValidationError, match="canonical"):
        secgroups.recheck(good.replace(remote_cidrs=["10.0.0.1/8"]))
    assert secgroups.describe(good) == "ingress tcp 22 from 10.0.0.0/8"
    assert secgroups.describe(SecurityRule(uuid="r2", direction="egress", remote_group="g"),
                              {"g": "web"}) == "egress any protocol to group web"
    assert secgroups.identity(good) == secgroups.identity(good.replace(description="other"))


def _snapshot() -> tuple[Snapshot, dict[str, InterfaceSpec], SecurityGroup]:
    snap = Snapshot()
    net = NetworkSpec(uuid="n1", name="n", namespace="ns", netblock="10.0.0.0/24", vxid=7)
    snap.networks["n1"] = (net, 1)
    members = SecurityGroup(uuid=str(uuidlib.uuid4()), name="m", namespace="ns",
                            rules=[SecurityRule(uuid="e", direction="egress")])
    web = SecurityGroup(uuid=str(uuidlib.uuid4()), name="web", namespace="ns", rules=[
        SecurityRule(uuid="a", direction="ingress", protocol="tcp", ports="80",
                     remote_group=members.uuid),
        SecurityRule(uuid="b", direction="ingress", protocol="icmp", icmp_type=8)])
    snap.groups = {members.uuid: members, web.uuid: web}
    ifaces = {}
    for name, address, groups, node in (("server", "10.0.0.5", [web.uuid], "here"),
                                        ("member", "10.0.0.6", [members.uuid], "here"),
                                        ("remote", "10.0.0.7", [members.uuid], "there"),
                                        ("other", "10.0.0.8", [], "here")):
        instance = InstanceSpec(uuid=f"i-{name}", name=name, namespace="ns", cpus=1, memory=64,
                                disks=[Disk(device="vda", size_gb=1)], node=node)
        iface = InterfaceSpec(uuid=str(uuidlib.uuid4()), network_uuid="n1",
                              instance_uuid=instance.uuid, namespace="ns", order=0,
                              macaddr="02:00:00:00:00:01", ipv4=address, security_groups=groups)
        snap.instances[instance.uuid] = instance
        snap.interfaces[iface.uuid] = iface
        ifaces[name] = iface
    return snap, ifaces, web


def _build(snap: Snapshot, previous: policy.Policy | None = None) -> policy.Policy:
    return policy.build(snap, node="here", names=NAMES, zones={7: 3}, wanted_networks=["n1"],
                        network_node=False, previous=previous)


def test_a_policy_allows_what_the_rules_say_and_nothing_else() -> None:
    snap, ifaces, web = _snapshot()
    built = _build(snap)
    assert [p.interface for p in built.ports] == sorted(
        i.uuid for i in ifaces.values() if i.instance_uuid != "i-remote")
    # Both members (one here, one on another node), merged into one range.
    assert built.sets == {policy.group_set_name(web.rules[0].remote_group, "n1", snap):
                          ("10.0.0.6/31",)}
    # A member (local or on another node) reaches port 80; a stranger does not.
    assert built.allows(Flow(zone=3, protocol=6, src="10.0.0.6", dst="10.0.0.5", dport=80))
    assert built.allows(Flow(zone=3, protocol=6, src="10.0.0.7", dst="10.0.0.5", dport=80))
    assert not built.allows(Flow(zone=3, protocol=6, src="10.0.0.8", dst="10.0.0.5", dport=80))
    assert not built.allows(Flow(zone=3, protocol=6, src="10.0.0.6", dst="10.0.0.5", dport=81))
    # Pings from anywhere, as far as the server goes (an outside address here).
    assert built.allows(Flow(zone=3, protocol=1, src="192.0.2.9", dst="10.0.0.5", icmp_type=8))
    # "other" names no group: nothing in or out, but DHCP.
    assert not built.allows(Flow(zone=3, protocol=1, src="10.0.0.8", dst="10.0.0.5",
                                 icmp_type=8))
    assert not built.allows(Flow(zone=3, protocol=1, src="10.0.0.8", dst="10.0.0.6",
                                 icmp_type=8))
    assert built.allows(Flow(zone=3, protocol=17, src="0.0.0.0", dst="255.255.255.255",
                             sport=68, dport=67))
    # Another zone is another network: nothing of this one applies.
    assert built.allows(Flow(zone=9, protocol=6, src="10.0.0.8", dst="10.0.0.5", dport=80))
    # Addresses of the network nobody has any more are stale; the router is not.
    assert built.stale(Flow(zone=3, protocol=6, src="10.0.0.99", dst="10.0.0.5", dport=80))
    assert not built.stale(Flow(zone=3, protocol=17, src="10.0.0.1", dst="10.0.0.5"))
    assert not built.stale(Flow(zone=3, protocol=6, src="192.0.2.9", dst="10.0.0.5"))


def test_records_no_portal_would_write_are_left_out() -> None:
    snap, ifaces, web = _snapshot()
    other = ifaces["other"]
    snap.interfaces[other.uuid] = other.replace(macaddr='02:00:00:00:00:01" drop; "')
    remote = ifaces["remote"]
    snap.interfaces[remote.uuid] = remote.replace(allowed_addresses=["not-a-cidr"])
    built = _build(snap)
    assert other.uuid not in [p.interface for p in built.ports]  # its tap passes nothing
    assert built.sets[policy.group_set_name(web.rules[0].remote_group, "n1", snap)] == (
        "10.0.0.6/32",)


def test_a_group_that_fails_its_check_keeps_what_was_applied() -> None:
    snap, ifaces, web = _snapshot()
    first = _build(snap)
    snap.groups[web.uuid] = web.replace(rules=[web.rules[0].replace(ports="0")], generation=2)
    second = _build(snap, first)
    server = second.port(ifaces["server"].uuid)
    assert server is not None and server.error and "security group web" in server.error
    assert server.groups == {web.uuid: 1}
    assert second.chains == first.chains
    # Without anything applied before, the port gets no chain of it, and says why.
    third = _build(snap)
    server = third.port(ifaces["server"].uuid)
    assert server is not None and server.groups == {} and server.error


def test_a_group_whose_record_was_refused_keeps_what_was_applied() -> None:
    """The agent's gate (nodeagent.records) keeps a refused group out of the
    snapshot: its ports keep the chains applied before and say why, and a
    group that is simply gone is no chain at all."""
    snap, ifaces, web = _snapshot()
    first = _build(snap)
    del snap.groups[web.uuid]
    snap.refused_groups[web.uuid] = "rules[0].ports: '0' is not a port"
    second = _build(snap, first)
    server = second.port(ifaces["server"].uuid)
    assert server is not None and server.groups == {web.uuid: 1}
    assert server.error == f"security group {web.uuid}: rules[0].ports: '0' is not a port"
    assert second.chains == first.chains and second.sets == first.sets
    # Never applied before: no chain of it (nothing let in), and the reason.
    server = _build(snap).port(ifaces["server"].uuid)
    assert server is not None and server.groups == {} and server.ingress == ()
    assert server.error and "is not a port" in server.error
    # Deleted rather than refused: gone from the port, which says so.
    del snap.refused_groups[web.uuid]
    server = _build(snap, first).port(ifaces["server"].uuid)
    assert server is not None and server.groups == {} and "does not exist" in (server.error or "")


def test_a_member_arriving_changes_set_elements_and_its_own_chains_only() -> None:
    snap, ifaces, web = _snapshot()
    before = filterrules.build(_build(snap), filterrules.Names("t", "sfab12"))
    other = ifaces["other"]
    snap.interfaces[other.uuid] = other.replace(
        security_groups=[web.rules[0].remote_group])
    after = filterrules.build(_build(snap), filterrules.Names("t", "sfab12"))
    text = filterrules.changes(before, after, "t")
    tap = NAMES.tap(other.uuid)
    changed_chains = {line.split()[4] for line in text.splitlines()
                      if line.startswith("flush chain") or line.startswith("add chain")}
    assert changed_chains == {f"e_{tap}", f"i_{tap}", "digest"}
    assert "add element bridge t rg_" in text and "10.0.0.8" in text
    assert "table inet" not in text  # nothing about zones changed
    assert filterrules.changes(after, after, "t").splitlines() == [
        "flush chain bridge t digest", f"add rule bridge t digest counter comment "
        f'"sfcloud {after.digest}"']
    # A port gone: its chains and map entries go, after what named them.
    del snap.interfaces[other.uuid]
    gone = filterrules.changes(after, filterrules.build(_build(snap), filterrules.Names(
        "t", "sfab12")), "t").splitlines()
    deletes = [i for i, line in enumerate(gone) if line.startswith("delete chain")]
    flushes = [i for i, line in enumerate(gone) if line.startswith("flush map")]
    assert deletes and flushes and max(flushes) < min(deletes)
    full = filterrules.full(after, "t")
    assert filterrules.digest_of(full) == after.digest
    # A group gone with its last port: every chain that goes is emptied
    # before any goes (the port's chains jump to the group's).
    server = ifaces["server"]
    del snap.interfaces[server.uuid]
    del snap.groups[web.uuid]
    last = filterrules.changes(after, filterrules.build(_build(snap), filterrules.Names(
        "t", "sfab12")), "t").splitlines()
    emptied = [i for i, line in enumerate(last) if line.startswith("flush chain")
               and "digest" not in line]
    deleted = [i for i, line in enumerate(last) if line.startswith("delete chain")]
    # From "after": the two ports' s_, e_ and i_ chains, and web's two.
    assert len(deleted) == 8 and max(emptied) < min(deleted)


def test_conntrack_lines_are_read_by_their_original_direction() -> None:
    line = ("tcp      6 431999 ESTABLISHED src=10.0.0.6 dst=10.0.0.5 sport=41000 dport=80 "
            "src=10.0.0.5 dst=10.0.0.6 sport=80 dport=41000 [ASSURED] mark=0 zone=3 use=1")
    assert conntrack.parse(line) == Flow(zone=3, protocol=6, src="10.0.0.6", dst="10.0.0.5",
                                         sport=41000, dport=80)
    icmp = ("icmp     1 29 src=10.0.0.8 dst=10.0.0.5 type=8 code=0 id=7 src=10.0.0.5 "
            "dst=10.0.0.8 type=0 code=0 id=7 mark=0 zone=3 use=1")
    assert conntrack.parse(icmp) == Flow(zone=3, protocol=1, src="10.0.0.8", dst="10.0.0.5",
                                         icmp_type=8, icmp_code=0)
    assert conntrack.parse("tcp 6 1 src=127.0.0.1 dst=127.0.0.1 sport=1 dport=2") is None
    assert conntrack.parse("conntrack v1.4.7 (conntrack-tools): 2 flow entries") is None


def test_an_interfaces_filtering_state() -> None:
    spec = InterfaceSpec(uuid="i", network_uuid="n", instance_uuid="m", namespace="ns",
                         order=0, macaddr="02:00:00:00:00:01", ipv4="10.0.0.5",
                         security_groups=["a", "b"])
    observed = InterfaceObserved(node="n1", groups={"a": 1, "b": 2})
    assert states.filtering_state(spec, None, {"a": 1, "b": 2}) == "pending"
    assert states.filtering_state(spec, observed, {"a": 1, "b": 2}) == "applied"
    assert states.filtering_state(spec, observed, {"a": 1, "b": 3}) == "pending"
    assert states.filtering_state(spec, observed.replace(state="error"), {}) == "error"
    off = spec.replace(port_security=False, security_groups=[])
    assert states.filtering_state(off, observed, {}) == "pending"
    assert states.filtering_state(off, observed.replace(port_security=False, groups={}),
                                  {}) == "off"


def test_the_routers_pings_reach_every_filtered_port() -> None:
    """Shaken Fist's `network ping` comes from the network node's router: its
    echo requests are let in whatever the port's groups say; nothing else of
    the router's is, and nobody else's pings are."""
    snap, ifaces, _ = _snapshot()
    built = _build(snap)
    router = snap.networks["n1"][0].router
    server = ifaces["member"]  # in a group with no ingress rule at all
    ping = Flow(zone=3, protocol=1, src=router, dst=server.ipv4 or "", icmp_type=8)
    assert built.allows(ping)
    assert not built.allows(Flow(zone=3, protocol=1, src="10.0.0.99", dst=server.ipv4 or "",
                                 icmp_type=0))
    assert not built.allows(Flow(zone=3, protocol=6, src=router, dst=server.ipv4 or "",
                                 sport=40000, dport=22))
    tables = filterrules.build(built, filterrules.Names("t", "sfab12"))
    tap = NAMES.tap(server.uuid)
    assert any(f"ip saddr {router} icmp type echo-request" in rule
               for rule in tables.chains[f"i_{tap}"].rules)
    assert not any("echo-request" in rule for rule in tables.chains[f"e_{tap}"].rules)
