"""A Policy as nftables: two tables of the same name, rendered whole.

This kernel kind has no conntrack in the bridge family (``ct`` is refused
there), so state lives in the ``inet`` family, which bridged IPv4 reaches
through br_netfilter; the bridge family, which still sees which port a
frame came in by and goes out by, judges each frame and says so in three
bits of its mark. The order a bridged IPv4 packet meets them in:

    bridge prerouting -300  ``prerouting``: frames from a guest's tap pass its
                            anti-spoofing chain (MAC, addresses, no DHCP
                            answers, no IPv6, nothing but IPv4 and ARP) and
                            are marked VETTED; trusted ports (the network's
                            VXLAN link, the router's veth) are VETTED as they
                            are; a tap of ours that no port names is dropped
    inet prerouting -300    ``zones``: one conntrack zone per network (its
                            bridge), so networks with the same range never
                            share a connection
    inet prerouting -150    ``tracked``: a packet of a known connection is
                            marked ESTABLISHED
    bridge forward -300     ``forward``: nothing goes between one of our ports
                            and a port no interface names (fail closed both
                            ways); towards one of our ports, a frame must be
                            VETTED; ARP passes; otherwise the sending
                            port's egress chain marks EGRESS_OK, the
                            receiving port's ingress chain INGRESS_OK (DHCP
                            and the router's pings always; trusted
                            ports give theirs freely: the guest at the other
                            end of a VXLAN link is judged by its own node)
    inet forward 0          ``forward``: on our bridges, known connections
                            pass, invalid ones and new TCP without SYN don't,
                            new ones need both bits, the rest is dropped

Every chain of a group is shared by the ports of one network; a remote
group is a set of its members' addresses on that network, so a member
coming or going changes one set element and no rule. Names carry the
cloud's tag and a prefix (nft 1.0.6 refuses some words as chain names).

The tables are built as a model (``Tables``: sets, verdict maps, chains)
and applied one of two ways, each a single ``nft -f`` the kernel takes all
of or nothing of, with established flows untouched either way: ``full``
("table T; delete table T; table T {...}", after an agent starts) or
``changes`` from the model last applied: only the sets, maps and chains
that differ are rewritten, so a remote group's member coming or going
changes set elements and the chains of its own port, and every other rule
keeps its handle. A rule in the chain ``digest`` carries a digest of the
whole model, rewritten by either way, so an unchanged policy costs one
``nft list chain``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from nodeagent.net.policy import GroupChain, Policy, Port, Rule

VETTED = 0x01000000
EGRESS_OK = 0x02000000
INGRESS_OK = 0x04000000
ESTABLISHED = 0x08000000
OURS = VETTED | EGRESS_OK | INGRESS_OK | ESTABLISHED
KEEP = 0xFFFFFFFF ^ OURS
DIGEST_CHAIN = "digest"
DIGEST_MARK = 'comment "sfcloud '


class Names:
    """The tables' name and the wildcards that catch every port and bridge
    of this cloud."""

    def __init__(self, table: str, tag: str):
        self.table = table
        self.taps = f"{tag}t*"
        self.bridges = f"{tag}b*"


@dataclass(frozen=True)
class NamedSet:
    type: str
    elements: tuple[str, ...] = ()
    interval: bool = False

    def declaration(self) -> str:
        return f"type {self.type};" + (" flags interval;" if self.interval else "")


@dataclass(frozen=True)
class Chain:
    rules: tuple[str, ...] = ()
    hook: str | None = None  # base chains only


@dataclass(frozen=True)
class Tables:
    """Both tables as data: the bridge table's parts by name, the inet
    table's lines (it changes only when networks come or go)."""

    sets: dict[str, NamedSet] = field(default_factory=dict)
    maps: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)  # key -> chain
    chains: dict[str, Chain] = field(default_factory=dict)
    inet: tuple[str, ...] = ()

    @property
    def digest(self) -> str:
        text = repr((sorted(self.sets.items()), sorted(self.maps.items()),
                     sorted(self.chains.items()), self.inet))
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def _hex(value: int) -> str:
    return f"0x{value:08x}"


def _mark(bit: int, then: str = "") -> str:
    return f"meta mark set meta mark | {_hex(bit)}" + (f" {then}" if then else "")


def _elements(items: Iterable[str]) -> str:
    return ", ".join(items)


def _quoted(names: Iterable[str]) -> str:
    return _elements(f'"{name}"' for name in names)


# --- the bridge table -------------------------------------------------------------------------


def _spoof_chain(port: Port) -> Chain:
    """What a guest may send at all: from its MAC and its addresses, ARP
    that tells the truth, DHCP only as a client, IPv4 and ARP only."""
    sources = port.sources
    allowed = f"{{ {_elements(sources)} }}" if sources else None
    rules = [f"ether saddr != {port.mac} drop",
             f"ether type arp arp saddr ether != {port.mac} drop"]
    if allowed:
        rules.append(f"ether type arp arp saddr ip != {{ 0.0.0.0, {_elements(sources)} }} drop")
    else:
        rules.append("ether type arp arp saddr ip != 0.0.0.0 drop")
    rules += [
        # A DHCP client before it has its address.
        "ether type ip ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 "
        + _mark(VETTED, "accept"),
        f"ether type ip ip saddr != {allowed} drop" if allowed else "ether type ip drop",
        "ether type ip udp sport 67 drop",  # no DHCP server of its own
        "ether type != { ip, arp } drop",  # IPv6 and the rest
        _mark(VETTED, "accept"),
    ]
    return Chain(tuple(rules))


def _port_chain(baselines: tuple[str, ...], bit: int, groups: tuple[str, ...]) -> Chain:
    rules = [f"{baseline} {_mark(bit, 'return')}" for baseline in baselines]
    for group in groups:
        rules += [f"jump {group}", f"meta mark & {_hex(bit)} != 0 return"]
    return Chain(tuple(rules))


def _match(rule: Rule) -> str:
    parts = []
    if rule.remote is not None:
        where = "saddr" if rule.direction == "ingress" else "daddr"
        if rule.remote_set:
            parts.append(f"ip {where} @{rule.remote_set}")
        elif rule.remote:
            parts.append(f"ip {where} {{ {_elements(rule.remote)} }}")
        else:
            return ""  # CIDRs that were all dropped: matches nothing
    if rule.ports is not None:
        proto = "tcp" if rule.protocol == 6 else "udp"
        ports = _elements(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in rule.ports.ranges)
        parts.append(f"{proto} dport {{ {ports} }}")
    elif rule.protocol == 1:
        parts.append("meta l4proto icmp")
        if rule.icmp_type is not None:
            parts.append(f"icmp type {rule.icmp_type}")
        if rule.icmp_code is not None:
            parts.append(f"icmp code {rule.icmp_code}")
    elif rule.protocol is not None:
        parts.append(f"meta l4proto {rule.protocol}")
    return " ".join(["ether type ip", *parts])


def _group_chain(chain: GroupChain) -> Chain:
    bit = EGRESS_OK if chain.name.endswith("_e") else INGRESS_OK
    return Chain(tuple(f"{match} {_mark(bit, 'return')}" for rule in chain.rules
                       if (match := _match(rule))))


def spoof_chain(port: Port) -> str:
    return f"s_{port.tap}"


def _base_chains(names: Names) -> dict[str, Chain]:
    """The hooked chains: the same for every policy (they only name sets and maps)."""
    return {
        "prerouting": Chain((
            f'iifname != @ports iifname != "{names.taps}" accept',
            f"meta mark set meta mark & {_hex(KEEP)}",
            f"iifname @uplinks {_mark(VETTED, 'accept')}",
            "iifname vmap @spoof",
            "drop",  # a tap of ours that no port names: nothing passes
        ), "type filter hook prerouting priority -300; policy accept;"),
        "forward": Chain((
            f'oifname "{names.taps}" oifname != @taps drop',
            # From one of our ports to one that is not: a stranger in our bridge.
            "iifname @ports oifname != @ports drop",
            "oifname != @ports accept",
            f"meta mark & {_hex(VETTED)} == 0 drop",
            "ether type != { ip, arp } drop",
            "ether type arp accept",
            f"meta mark & {_hex(ESTABLISHED)} != 0 accept",
            f"iifname @uplinks {_mark(EGRESS_OK)}",
            f"oifname @uplinks {_mark(INGRESS_OK)}",
            "iifname vmap @egress",
            "oifname vmap @ingress",
        ), "type filter hook forward priority -300; policy accept;"),
        "open": Chain((_mark(VETTED, "accept"),)),
        "open_e": Chain((_mark(EGRESS_OK),)),
        "open_i": Chain((_mark(INGRESS_OK),)),
    }


def build(policy: Policy, names: Names) -> Tables:
    filtered = [p for p in policy.ports if p.filtered]
    open_ports = [p for p in policy.ports if not p.filtered]
    taps = tuple(sorted(f'"{p.tap}"' for p in policy.ports))
    uplinks = tuple(f'"{u}"' for u in policy.uplinks)
    sets = {"taps": NamedSet("ifname", taps), "uplinks": NamedSet("ifname", uplinks),
            "ports": NamedSet("ifname", tuple(sorted(taps + uplinks)))}
    for name, cidrs in policy.sets.items():
        sets[name] = NamedSet("ipv4_addr", cidrs, interval=True)

    def vmap(chains: dict[str, str]) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(chains.items()))

    maps = {
        "spoof": vmap({p.tap: spoof_chain(p) for p in filtered}
                      | {p.tap: "open" for p in open_ports}),
        "egress": vmap({p.tap: f"e_{p.tap}" for p in filtered}
                       | {p.tap: "open_e" for p in open_ports}),
        "ingress": vmap({p.tap: f"i_{p.tap}" for p in filtered}
                        | {p.tap: "open_i" for p in open_ports}),
    }
    chains = _base_chains(names)
    for port in filtered:
        chains[spoof_chain(port)] = _spoof_chain(port)
        chains[f"e_{port.tap}"] = _port_chain(("ether type ip udp sport 68 udp dport 67",),
                                              EGRESS_OK, port.egress)
        # DHCP's answers, and (for `network ping`) the network's router's pings.
        router = (f"ether type ip ip saddr {port.router} icmp type echo-request",) \
            if port.router else ()
        chains[f"i_{port.tap}"] = _port_chain(("ether type ip udp sport 67 udp dport 68",
                                               *router), INGRESS_OK, port.ingress)
    for chain in policy.chains.values():
        chains[chain.name] = _group_chain(chain)
    return Tables(sets=sets, maps=maps, chains=chains, inet=_inet_body(policy, names))


# --- the inet table ---------------------------------------------------------------------------


def _inet_chain(name: str, hook: str, rules: Iterable[str]) -> list[str]:
    return [f"  chain {name} {{", f"    {hook}", *(f"    {rule}" for rule in rules), "  }"]


def _inet_body(policy: Policy, names: Names) -> tuple[str, ...]:
    bridges = policy.bridges
    zone_map = _elements(f'"{bridge}" : {zone}' for bridge, zone in sorted(bridges.items()))
    ours = f"{{ {_quoted(sorted(bridges))} }}" if bridges else None
    both = _hex(EGRESS_OK | INGRESS_OK)
    return (
        *_inet_chain("zones", "type filter hook prerouting priority -300; policy accept;",
                     [f"ct zone set iifname map {{ {zone_map} }}"] if bridges else []),
        *_inet_chain("tracked", "type filter hook prerouting priority -150; policy accept;",
                     [f"iifname {ours} ct state established,related " + _mark(ESTABLISHED)]
                     if ours else []),
        *_inet_chain("forward", "type filter hook forward priority 0; policy accept;", [
            f'iifname != "{names.bridges}" accept',
            "ct state established,related accept",
            "ct state invalid drop",
            "ct state new meta l4proto tcp tcp flags & (fin|syn|rst|ack) != syn drop",
            f"meta mark & {both} == {both} accept",
            "drop",
        ]),
    )


# --- applying: whole, or what changed -----------------------------------------------------------


def _digest_rule(tables: Tables) -> str:
    return f'counter {DIGEST_MARK}{tables.digest}"'


def _inet_table(table: str, tables: Tables) -> list[str]:
    return [f"table inet {table}", f"delete table inet {table}", f"table inet {table} {{",
            *tables.inet, "}"]


def full(tables: Tables, table: str) -> str:
    """Both tables, replacing whatever tables of that name exist."""
    lines = [f"table bridge {table}", f"delete table bridge {table}", f"table bridge {table} {{"]
    for name, found in sorted(tables.sets.items()):
        lines += [f"  set {name} {{", f"    {found.declaration()}"]
        if found.elements:
            lines.append(f"    elements = {{ {_elements(found.elements)} }}")
        lines.append("  }")
    for name, entries in sorted(tables.maps.items()):
        lines += [f"  map {name} {{", "    type ifname : verdict;"]
        if entries:
            lines.append("    elements = { " + _elements(
                f'"{key}" : jump {chain}' for key, chain in entries) + " }")
        lines.append("  }")
    chains = {**tables.chains, DIGEST_CHAIN: Chain((_digest_rule(tables),))}
    for name, chain in sorted(chains.items()):
        lines += [f"  chain {name} {{", *([f"    {chain.hook}"] if chain.hook else []),
                  *(f"    {rule}" for rule in chain.rules), "  }"]
    lines.append("}")
    return "\n".join(lines + _inet_table(table, tables)) + "\n"


def changes(old: Tables, new: Tables, table: str) -> str:
    """One transaction taking the kernel from ``old`` (as applied) to ``new``:
    only what differs is written."""
    prefix = f"bridge {table}"
    head, fill, rules, maps, drop = [], [], [], [], []
    for name, found in sorted(new.sets.items()):
        before = old.sets.get(name)  # a name's type never changes: it says what it holds
        if before is None:
            head.append(f"add set {prefix} {name} {{ {found.declaration()} }}")
        if before is None or before.elements != found.elements:
            if before is not None:
                fill.append(f"flush set {prefix} {name}")
            if found.elements:
                fill.append(f"add element {prefix} {name} {{ {_elements(found.elements)} }}")
    for name, chain in sorted(new.chains.items()):
        before_chain = old.chains.get(name)
        if before_chain == chain:
            continue
        if before_chain is None:
            head.append(f"add chain {prefix} {name}")
        else:
            rules.append(f"flush chain {prefix} {name}")
        rules += [f"add rule {prefix} {name} {rule}" for rule in chain.rules]
    for name, entries in sorted(new.maps.items()):
        if old.maps.get(name) != entries:
            maps.append(f"flush map {prefix} {name}")
            if entries:
                maps.append(f"add element {prefix} {name} {{ " + _elements(
                    f'"{key}" : jump {chain}' for key, chain in entries) + " }")
    # What nothing names any more goes last, once its users were rewritten:
    # chains that go may name each other (a port's chain jumps to a group's),
    # so all of them are emptied before any is deleted.
    gone = sorted(old.chains.keys() - new.chains.keys())
    drop += [f"flush chain {prefix} {name}" for name in gone]
    drop += [f"delete chain {prefix} {name}" for name in gone]
    drop += [f"delete set {prefix} {name}" for name in sorted(old.sets.keys() - new.sets.keys())]
    lines = [*head, *fill, *rules, *maps, *drop]
    if old.inet != new.inet:
        lines += _inet_table(table, new)
    lines += [f"flush chain {prefix} {DIGEST_CHAIN}",
              f"add rule {prefix} {DIGEST_CHAIN} {_digest_rule(new)}"]
    return "\n".join(lines) + "\n"


def digest_of(text: str) -> str:
    """The digest a listed (or rendered) digest chain carries."""
    start = text.find(DIGEST_MARK)
    if start < 0:
        return ""
    return text[start + len(DIGEST_MARK):].split('"', 1)[0]


def removal(table: str) -> str:
    """Both tables gone (an ``nft -f`` text that works whether or not they exist)."""
    return "".join(f"table {family} {table}\ndelete table {family} {table}\n"
                   for family in ("bridge", "inet"))
