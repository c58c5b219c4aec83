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
    bridge forward -300     ``forward``: towards one of our ports, a frame
                            must be VETTED; ARP passes; otherwise the sending
                            port's egress chain marks EGRESS_OK, the
                            receiving port's ingress chain INGRESS_OK (trusted
                            ports give theirs freely: the guest at the other
                            end of a VXLAN link is judged by its own node)
    inet forward 0          ``forward``: on our bridges, known connections
                            pass, invalid ones and new TCP without SYN don't,
                            new ones need both bits, the rest is dropped

Every chain of a group is shared by the ports of one network; a remote
group is a set of its members' addresses on that network, so a member
coming or going changes one set element and no rule. Names carry the
cloud's tag and a prefix (nft 1.0.6 refuses some words as chain names).

Applying is one ``nft -f`` of "table T; delete table T; table T {...}" for
both tables: the kernel takes all of it or nothing, and established flows
are untouched either way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from nodeagent.net.policy import GroupChain, Policy, Port, Rule

VETTED = 0x01000000
EGRESS_OK = 0x02000000
INGRESS_OK = 0x04000000
ESTABLISHED = 0x08000000
OURS = VETTED | EGRESS_OK | INGRESS_OK | ESTABLISHED
KEEP = 0xFFFFFFFF ^ OURS
DIGEST_MARK = 'comment "sfcloud '


def _hex(value: int) -> str:
    return f"0x{value:08x}"


def _mark(bit: int, then: str = "") -> str:
    return f"meta mark set meta mark | {_hex(bit)}" + (f" {then}" if then else "")


def _elements(items: Iterable[str]) -> str:
    return ", ".join(items)


def _quoted(names: Iterable[str]) -> str:
    return _elements(f'"{name}"' for name in names)


def _set(name: str, kind: str, elements: Iterable[str], interval: bool = False) -> list[str]:
    items = list(elements)
    lines = [f"  set {name} {{", f"    type {kind};"]
    if interval:
        lines.append("    flags interval;")
    if items:
        lines.append(f"    elements = {{ {_elements(items)} }}")
    lines.append("  }")
    return lines


def _vmap(name: str, entries: dict[str, str]) -> list[str]:
    lines = [f"  map {name} {{", "    type ifname : verdict;"]
    if entries:
        lines.append("    elements = { " + _elements(
            f'"{key}" : jump {value}' for key, value in sorted(entries.items())) + " }")
    lines.append("  }")
    return lines


def _chain(name: str, rules: Iterable[str], hook: str | None = None) -> list[str]:
    return [f"  chain {name} {{", *([f"    {hook}"] if hook else []),
            *(f"    {rule}" for rule in rules), "  }"]


# --- the bridge table -------------------------------------------------------------------------


def _spoof_chain(port: Port) -> list[str]:
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
    return _chain(spoof_chain(port), rules)


def _port_chain(name: str, baseline: str, bit: int, groups: tuple[str, ...]) -> list[str]:
    rules = [f"{baseline} {_mark(bit, 'return')}"]
    for group in groups:
        rules += [f"jump {group}", f"meta mark & {_hex(bit)} != 0 return"]
    return _chain(name, rules)


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


def _group_chain(chain: GroupChain) -> list[str]:
    bit = EGRESS_OK if chain.name.endswith("_e") else INGRESS_OK
    rules = [f"{match} {_mark(bit, 'return')}" for rule in chain.rules if (match := _match(rule))]
    return _chain(chain.name, rules)


def _bridge_body(policy: Policy, names: Names) -> list[str]:
    filtered = [p for p in policy.ports if p.filtered]
    open_ports = [p for p in policy.ports if not p.filtered]
    taps = sorted(p.tap for p in policy.ports)
    uplinks = list(policy.uplinks)
    spoof = {p.tap: spoof_chain(p) for p in filtered} | {p.tap: "open" for p in open_ports}
    egress = {p.tap: f"e_{p.tap}" for p in filtered} | {p.tap: "open_e" for p in open_ports}
    ingress = {p.tap: f"i_{p.tap}" for p in filtered} | {p.tap: "open_i" for p in open_ports}
    lines = [
        *_set("taps", "ifname", (f'"{t}"' for t in taps)),
        *_set("uplinks", "ifname", (f'"{u}"' for u in uplinks)),
        *_set("ports", "ifname", (f'"{n}"' for n in sorted(taps + uplinks))),
        *(line for name, cidrs in sorted(policy.sets.items())
          for line in _set(name, "ipv4_addr", cidrs, interval=True)),
        *_vmap("spoof", spoof), *_vmap("egress", egress), *_vmap("ingress", ingress),
        *_chain("prerouting", [
            f'iifname != @ports iifname != "{names.taps}" accept',
            f"meta mark set meta mark & {_hex(KEEP)}",
            f"iifname @uplinks {_mark(VETTED, 'accept')}",
            "iifname vmap @spoof",
            "drop",  # a tap of ours that no port names: nothing passes
        ], "type filter hook prerouting priority -300; policy accept;"),
        *_chain("forward", [
            f'oifname "{names.taps}" oifname != @taps drop',
            "oifname != @ports accept",
            f"meta mark & {_hex(VETTED)} == 0 drop",
            "ether type != { ip, arp } drop",
            "ether type arp accept",
            f"meta mark & {_hex(ESTABLISHED)} != 0 accept",
            f"iifname @uplinks {_mark(EGRESS_OK)}",
            f"oifname @uplinks {_mark(INGRESS_OK)}",
            "iifname vmap @egress",
            "oifname vmap @ingress",
        ], "type filter hook forward priority -300; policy accept;"),
        *_chain("open", [_mark(VETTED, "accept")]),
        *_chain("open_e", [_mark(EGRESS_OK)]),
        *_chain("open_i", [_mark(INGRESS_OK)]),
    ]
    for port in filtered:
        lines += _spoof_chain(port)
        lines += _port_chain(f"e_{port.tap}", "ether type ip udp sport 68 udp dport 67",
                             EGRESS_OK, port.egress)
        lines += _port_chain(f"i_{port.tap}", "ether type ip udp sport 67 udp dport 68",
                             INGRESS_OK, port.ingress)
    for chain in sorted(policy.chains.values(), key=lambda c: c.name):
        lines += _group_chain(chain)
    return lines


def spoof_chain(port: Port) -> str:
    return f"s_{port.tap}"


# --- the inet table ---------------------------------------------------------------------------


def _inet_body(policy: Policy, names: Names) -> list[str]:
    bridges = policy.bridges
    zone_map = _elements(f'"{bridge}" : {zone}' for bridge, zone in sorted(bridges.items()))
    ours = f"{{ {_quoted(sorted(bridges))} }}" if bridges else None
    both = _hex(EGRESS_OK | INGRESS_OK)
    return [
        *_chain("zones", [f"ct zone set iifname map {{ {zone_map} }}"] if bridges else [],
                "type filter hook prerouting priority -300; policy accept;"),
        *_chain("tracked", [f"iifname {ours} ct state established,related "
                            + _mark(ESTABLISHED)] if ours else [],
                "type filter hook prerouting priority -150; policy accept;"),
        *_chain("forward", [
            f'iifname != "{names.bridges}" accept',
            "ct state established,related accept",
            "ct state invalid drop",
            "ct state new meta l4proto tcp tcp flags & (fin|syn|rst|ack) != syn drop",
            f"meta mark & {both} == {both} accept",
            "drop",
        ], "type filter hook forward priority 0; policy accept;"),
    ]


# --- both, as one transaction -------------------------------------------------------------------


class Names:
    """The tables' name and the wildcards that catch every port and bridge
    of this cloud."""

    def __init__(self, table: str, tag: str):
        self.table = table
        self.taps = f"{tag}t*"
        self.bridges = f"{tag}b*"


def render(policy: Policy, names: Names) -> str:
    """Both tables, replacing whatever tables of that name exist."""
    bridge, inet = _bridge_body(policy, names), _inet_body(policy, names)
    digest = hashlib.sha256("\n".join(bridge + ["--"] + inet).encode()).hexdigest()[:32]
    text = []
    for family, body in (("bridge", bridge), ("inet", inet)):
        text += [f"table {family} {names.table}", f"delete table {family} {names.table}",
                 f"table {family} {names.table} {{", f'  {DIGEST_MARK}{digest}"', *body, "}"]
    return "\n".join(text) + "\n"


def digest_of(text: str) -> str:
    """The digest a rendered (or listed) table carries in its comment."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(DIGEST_MARK):
            return line[len(DIGEST_MARK):].rstrip('"')
    return ""


def removal(table: str) -> str:
    """Both tables gone (an ``nft -f`` text that works whether or not they exist)."""
    return "".join(f"table {family} {table}\ndelete table {family} {table}\n"
                   for family in ("bridge", "inet"))
