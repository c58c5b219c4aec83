"""What a valid security group rule, group name, address set or allowed
address is, and the default group every namespace has.

The API, the pages and the node agents (which check again what they read
from etcd before rendering it) all use these, so a bad value gets the same
message wherever it came from and can never reach a firewall.

Semantics, as Neutron and AWS have them: rules only allow; an interface
gets the union of its groups' rules; traffic is tracked, so the replies of
an allowed connection need no rule of their own; what no rule allows
ingress is dropped, and a group with no egress rule lets nothing out.
Networks are IPv4-only, and so are rules.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cloudstate.model import SecurityRule
from cloudstate.validation import ValidationError, shown

DEFAULT_GROUP = "default"
DEFAULT_DESCRIPTION = "every interface that names no group: anything out, in only from its members"
DIRECTIONS = ("ingress", "egress")
PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1}
ANY = "any"
MAX_PORT_ITEMS = 32
MAX_RULE_CIDRS = 64
MAX_ADDRESS_SET_CIDRS = 1000
MAX_ADDRESS_SETS = 50  # per namespace
MAX_ALLOWED_ADDRESSES = 16
MAX_GROUPS_PER_INTERFACE = 8
MAX_DESCRIPTION = 255

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_PORT_ITEM = re.compile(r"(\d{1,5})(?:-(\d{1,5}))?")


@dataclass(frozen=True)
class CheckedRule:
    """A rule as given, checked and in canonical form; its remote group or
    address set is still the reference the caller gave (a name or UUID)."""

    direction: str
    protocol: str = ANY
    ports: str | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    remote_cidrs: tuple[str, ...] = ()
    remote_group: str | None = None
    remote_address_set: str | None = None
    description: str = ""
    ethertype: str = "ipv4"


@dataclass(frozen=True)
class Ports:
    """A port list as ranges, each (low, high)."""

    ranges: tuple[tuple[int, int], ...] = field(default_factory=tuple)

    def __contains__(self, port: int) -> bool:
        return any(low <= port <= high for low, high in self.ranges)


# --- names ------------------------------------------------------------------------------------


def name(value: Any, kind: str = "security group", field: str = "name") -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValidationError(
            field, f"{shown(value)} is not a valid {kind} name: use 1-63 letters, digits, dots, "
            "hyphens and underscores, starting with a letter or digit")
    return value


def description(value: Any, field: str = "description") -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationError(field, "must be text")
    if len(value) > MAX_DESCRIPTION:
        raise ValidationError(field, f"is longer than {MAX_DESCRIPTION} characters")
    if any(ord(c) < 32 for c in value):
        raise ValidationError(field, "may not hold control characters or line breaks")
    return value


# --- addresses --------------------------------------------------------------------------------


def cidr(value: Any, field: str) -> str:
    """An IPv4 network or address in canonical CIDR form (host bits are
    dropped: 10.0.0.5/24 means 10.0.0.0/24; an address means its /32)."""
    refusal = f"{shown(value)} is not a CIDR block such as 10.0.0.0/24"
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, refusal)
    try:
        network = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValidationError(field, refusal) from None
    if not isinstance(network, ipaddress.IPv4Network):
        raise ValidationError(field, f"{shown(value)} is IPv6; networks and rules are IPv4 only")
    return str(network)


def cidrs(value: Any, field: str, limit: int) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise ValidationError(field, "must be a list of CIDR blocks")
    if len(value) > limit:
        raise ValidationError(field, f"at most {limit} CIDR blocks, not {len(value)}")
    found = [cidr(item, f"{field}[{index}]") for index, item in enumerate(value)]
    return tuple(sorted(set(found), key=_network_order))


def _network_order(text: str) -> tuple[int, int]:
    network = ipaddress.IPv4Network(text)
    return int(network.network_address), network.prefixlen


def allowed_addresses(value: Any, field: str = "allowed_addresses") -> list[str]:
    if value is None:
        return []
    return list(cidrs(value, field, MAX_ALLOWED_ADDRESSES))


# --- rules ------------------------------------------------------------------------------------


def protocol(value: Any, field: str = "protocol") -> str:
    """any, tcp, udp, icmp or another IP protocol's number (as text)."""
    if value is None or value == "" or (isinstance(value, str) and value.lower() == ANY):
        return ANY
    if isinstance(value, str) and value.lower() in PROTOCOLS:
        return value.lower()
    number = value
    if isinstance(value, str) and value.strip().isdigit():
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 255:
        raise ValidationError(field, f"{shown(value)} is not a protocol: use any, tcp, udp, icmp "
                                     "or an IP protocol number from 1 to 255")
    for known, proto_number in PROTOCOLS.items():
        if proto_number == number:
            return known
    if number in (41, 43, 44, 58, 59, 60):
        raise ValidationError(field, f"protocol {number} is IPv6's; rules are IPv4 only")
    return str(number)


def protocol_number(proto: str) -> int | None:
    """The IP protocol number of a canonical protocol; None for any."""
    return None if proto == ANY else PROTOCOLS.get(proto, int(proto) if proto.isdigit() else 0)


def ports(value: Any, field: str = "ports") -> str | None:
    """A port list ("22", "22,80-90", 8080 or [22, "80-90"]) in canonical
    form (sorted, merged); None for all ports."""
    if value is None or value == "" or value == []:
        return None
    items: list[Any]
    if isinstance(value, bool):
        raise ValidationError(field, "must be ports such as 22 or \"22,80-90\"")
    if isinstance(value, int):
        items = [value]
    elif isinstance(value, str):
        items = [item.strip() for item in value.split(",")]
    elif isinstance(value, list):
        items = value
    else:
        raise ValidationError(field, "must be ports such as 22 or \"22,80-90\"")
    if len(items) > MAX_PORT_ITEMS:
        raise ValidationError(field, f"at most {MAX_PORT_ITEMS} ports or ranges")
    ranges = []
    for item in items:
        text = str(item).strip() if not isinstance(item, bool) else ""
        match = _PORT_ITEM.fullmatch(text)
        if not match:
            raise ValidationError(field, f"{shown(item)} is not a port or a range such as 80-90")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) else low
        if not 1 <= low <= high <= 65535:
            raise ValidationError(field, f"{text} is not a range of ports from 1 to 65535")
        ranges.append((low, high))
    merged: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    if merged == [(1, 65535)]:
        return None
    return ",".join(str(low) if low == high else f"{low}-{high}" for low, high in merged)


def parse_ports(text: str | None) -> Ports | None:
    """A canonical port list as ranges; None for all ports."""
    if text is None:
        return None
    ranges = []
    for item in text.split(","):
        low, _, high = item.partition("-")
        ranges.append((int(low), int(high or low)))
    return Ports(tuple(ranges))


def _small(value: Any, field: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
        raise ValidationError(field, "must be a number from 0 to 255")
    return value


def _remote(value: Any, field: str) -> tuple[tuple[str, ...], str | None, str | None]:
    """(cidrs, group ref, address set ref) of a rule's remote end."""
    if value is None or value == {}:
        return (), None, None
    if not isinstance(value, Mapping):
        raise ValidationError(field, 'must be {"cidrs": [...]}, {"group": ...}, '
                                     '{"address_set": ...} or null (anywhere)')
    given = [key for key in ("cidrs", "group", "address_set") if value.get(key) is not None]
    if len(given) > 1:
        raise ValidationError(field, f"names {' and '.join(given)}: give only one remote end")
    if not given:
        return (), None, None
    key = given[0]
    if key == "cidrs":
        found = cidrs(value["cidrs"], f"{field}.cidrs", MAX_RULE_CIDRS)
        return ((), None, None) if found == ("0.0.0.0/0",) else (found, None, None)
    ref = value[key]
    if not isinstance(ref, str) or not ref.strip():
        raise ValidationError(f"{field}.{key}", f"must name a {key.replace('_', ' ')} "
                                                "(UUID or name)")
    return ((), ref.strip(), None) if key == "group" else ((), None, ref.strip())


def check_rule(raw: Any, field: str = "rule") -> CheckedRule:
    """One rule as the API and the pages give it:

        {"direction": "ingress", "protocol": "tcp", "ports": "22,80-90",
         "remote": {"cidrs": ["10.0.0.0/8"]}, "description": "ssh and web"}
    """
    if not isinstance(raw, Mapping):
        raise ValidationError(field, "must be an object with a direction")
    direction = raw.get("direction")
    if direction not in DIRECTIONS:
        raise ValidationError(f"{field}.direction", f"{shown(direction)} is not ingress or egress")
    ethertype = str(raw.get("ethertype") or "ipv4").lower()
    if ethertype != "ipv4":
        raise ValidationError(f"{field}.ethertype", "only ipv4: networks are IPv4 only, and "
                                                    "guests' IPv6 is dropped")
    proto = protocol(raw.get("protocol"), f"{field}.protocol")
    port_list = ports(raw.get("ports"), f"{field}.ports")
    if port_list is not None and proto not in ("tcp", "udp"):
        raise ValidationError(f"{field}.ports", "only tcp and udp rules have ports")
    icmp_type = _small(raw.get("icmp_type"), f"{field}.icmp_type")
    icmp_code = _small(raw.get("icmp_code"), f"{field}.icmp_code")
    if (icmp_type is not None or icmp_code is not None) and proto != "icmp":
        raise ValidationError(f"{field}.icmp_type", "only icmp rules have a type and code")
    if icmp_code is not None and icmp_type is None:
        raise ValidationError(f"{field}.icmp_code", "an icmp code needs an icmp type")
    remote_cidrs, group, address_set = _remote(raw.get("remote"), f"{field}.remote")
    return CheckedRule(
        direction=direction, protocol=proto, ports=port_list, icmp_type=icmp_type,
        icmp_code=icmp_code, remote_cidrs=remote_cidrs, remote_group=group,
        remote_address_set=address_set,
        description=description(raw.get("description"), f"{field}.description"),
        ethertype=ethertype,
    )


def as_raw(rule: SecurityRule) -> dict[str, Any]:
    """A stored rule in the shape check_rule reads (to check it again)."""
    remote: dict[str, Any] | None = None
    if rule.remote_cidrs:
        remote = {"cidrs": list(rule.remote_cidrs)}
    elif rule.remote_group:
        remote = {"group": rule.remote_group}
    elif rule.remote_address_set:
        remote = {"address_set": rule.remote_address_set}
    return {"direction": rule.direction, "ethertype": rule.ethertype,
            "protocol": rule.protocol, "ports": rule.ports, "icmp_type": rule.icmp_type,
            "icmp_code": rule.icmp_code, "remote": remote, "description": rule.description}


def recheck(rule: SecurityRule) -> SecurityRule:
    """A stored rule checked again (an agent does this before rendering it:
    etcd may hold what no portal wrote). Raises ValidationError."""
    checked = check_rule(as_raw(rule), f"rule {rule.uuid}")
    if checked.remote_cidrs != tuple(rule.remote_cidrs) or checked.ports != rule.ports \
            or checked.protocol != rule.protocol:
        raise ValidationError(f"rule {rule.uuid}", "is not in canonical form")
    return rule


def identity(rule: SecurityRule | CheckedRule) -> tuple[Any, ...]:
    """What makes two rules the same rule (their descriptions aside)."""
    return (rule.direction, rule.ethertype, rule.protocol, rule.ports, rule.icmp_type,
            rule.icmp_code, tuple(rule.remote_cidrs), rule.remote_group,
            rule.remote_address_set)


def default_rules(group_uuid: str, make_uuid: Any) -> list[SecurityRule]:
    """The default group's rules: anything out, anything in from its own members."""
    return [
        SecurityRule(uuid=make_uuid(), direction="egress",
                     description="anything out"),
        SecurityRule(uuid=make_uuid(), direction="ingress", remote_group=group_uuid,
                     description="anything from members of default"),
    ]


def describe(rule: SecurityRule, names: Mapping[str, str] | None = None) -> str:
    """A rule in a few words, for events and pages: "ingress tcp 22 from 10.0.0.0/8"."""
    names = names or {}
    what = rule.protocol if rule.protocol != ANY else "any protocol"
    if rule.ports:
        what += f" {rule.ports}"
    if rule.icmp_type is not None:
        what += f" type {rule.icmp_type}" + (f" code {rule.icmp_code}"
                                              if rule.icmp_code is not None else "")
    if rule.remote_cidrs:
        remote = ", ".join(rule.remote_cidrs)
    elif rule.remote_group:
        remote = f"group {names.get(rule.remote_group, rule.remote_group)}"
    elif rule.remote_address_set:
        remote = f"address set {names.get(rule.remote_address_set, rule.remote_address_set)}"
    else:
        remote = "anywhere"
    return f"{rule.direction} {what} {'from' if rule.direction == 'ingress' else 'to'} {remote}"
