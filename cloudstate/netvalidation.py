"""What a valid network, address, MAC or NIC model is.

The API, the pages and the portal's settings check with these, so a bad
value gets the same message wherever it came from.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from cloudstate.validation import ValidationError, shown

# Smaller than a /29 leaves too few addresses once the network, broadcast and
# router addresses are taken (Shaken Fist's rule); larger than a /8 is a
# mistake on a small cloud.
MIN_PREFIXLEN = 8
MAX_PREFIXLEN = 29
MAX_INTERFACES = 8
# A NIC's order (its ethN). A hot-plugged one takes the one after the
# highest, so removing and adding NICs climbs; past this, the lowest free.
MAX_INTERFACE_ORDER = 255
# Names a network's DNS answers beyond its instances' (portal.cloud.dnsentries).
MAX_DNS_ENTRIES = 256
NIC_MODELS = ("virtio", "e1000", "e1000e", "rtl8139")
RESERVED_NAMES = ("floating",)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")
_DIGITS = re.compile(r"[0-9]{1,2}")
# Ranges a guest network must never use: they mean something on every host.
_FORBIDDEN = [
    (ipaddress.IPv4Network("0.0.0.0/8"), "means this host's own network"),
    (ipaddress.IPv4Network("127.0.0.0/8"), "is loopback"),
    (ipaddress.IPv4Network("169.254.0.0/16"), "is link-local"),
    (ipaddress.IPv4Network("224.0.0.0/4"), "is multicast"),
    (ipaddress.IPv4Network("240.0.0.0/4"), "is reserved"),
]


def network_name(value: Any, field: str = "name") -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValidationError(
            field,
            f"{shown(value)} is not a valid network name: use 1-63 letters, digits, dots, "
            "hyphens and underscores, starting with a letter or digit",
        )
    if value.lower() in RESERVED_NAMES:
        raise ValidationError(field, f"{shown(value)} is reserved for the cloud's floating "
                                     "network: choose another name")
    return value


def netblock(value: Any, field: str = "netblock") -> ipaddress.IPv4Network:
    """An IPv4 range between /8 and /29, such as 10.0.0.0/24.

    One with host bits set (10.0.0.1/24) is refused, naming the range to
    give (10.0.0.0/24), on the API as Shaken Fist refuses it and on the
    pages alike: silently changing what was typed hides a typo."""
    example = "such as 10.0.0.0/24"
    if not isinstance(value, str) or "/" not in value:
        raise ValidationError(field, f"{shown(value)} is not an address range: give an IPv4 "
                                     f"address and a prefix length, {example}")
    text = value.strip()
    address_text, _, length_text = text.partition("/")
    if ":" in address_text:
        raise ValidationError(field, f"{shown(text)} is an IPv6 range: networks here are "
                                     f"IPv4 only, {example}")
    try:
        address = ipaddress.IPv4Address(address_text)
    except ValueError:
        raise ValidationError(field, f"{shown(address_text)} is not an IPv4 address (four "
                                     f"numbers from 0 to 255): give a range {example}") from None
    if not _DIGITS.fullmatch(length_text) or int(length_text) > 32:
        raise ValidationError(field, f"/{length_text[:12]} is not a prefix length: give one from "
                                     f"/{MIN_PREFIXLEN} to /{MAX_PREFIXLEN}, {example}")
    network = ipaddress.IPv4Network(f"{address}/{int(length_text)}", strict=False)
    if network.prefixlen > MAX_PREFIXLEN:
        raise ValidationError(
            field, f"{text} is smaller than a /{MAX_PREFIXLEN}: too few addresses for guests "
                   f"(give a prefix length from /{MIN_PREFIXLEN} to /{MAX_PREFIXLEN})")
    if network.prefixlen < MIN_PREFIXLEN:
        raise ValidationError(field, f"{text} is larger than a /{MIN_PREFIXLEN}: give a "
                                     f"prefix length from /{MIN_PREFIXLEN} to /{MAX_PREFIXLEN}")
    if address != network.network_address:
        raise ValidationError(field, f"{text} has host bits set: the range that address is in "
                                     f"is {network}; give that")
    for forbidden, why in _FORBIDDEN:
        if network.overlaps(forbidden):
            raise ValidationError(field, f"{network} overlaps {forbidden}, which {why}: "
                                         "choose a private range such as 10.0.0.0/24")
    return network


def address_in(value: Any, network: ipaddress.IPv4Network, field: str = "address") -> str:
    """A host address of ``network`` a guest may have (not the network,
    broadcast or router address)."""
    try:
        address = ipaddress.IPv4Address(str(value).strip())
    except ValueError as exc:
        raise ValidationError(field, f"{shown(value)} is not an IPv4 address") from exc
    if address not in network:
        raise ValidationError(field, f"{address} is not in the network's range {network}")
    if address in (network.network_address, network.broadcast_address):
        raise ValidationError(field, f"{address} is the network's own or broadcast address")
    if address == network.network_address + 1:
        raise ValidationError(field, f"{address} is the network's router address")
    return str(address)


def mac_address(value: Any, field: str = "macaddress") -> str:
    text = str(value).strip().lower().replace("-", ":")
    if not _MAC.fullmatch(text):
        raise ValidationError(field, f"{shown(value)} is not a MAC address such as "
                                     "02:00:00:12:34:56")
    if int(text[:2], 16) & 1:
        raise ValidationError(field, f"{shown(value)} is a multicast address; a NIC needs "
                                     "unicast")
    if text == "00:00:00:00:00:00":
        raise ValidationError(field, "the all-zero MAC address can't be used")
    return text


def nic_model(value: Any, field: str = "model") -> str:
    model = value or "virtio"
    if model not in NIC_MODELS:
        raise ValidationError(
            field, f"{shown(value)} is not offered; use one of {', '.join(NIC_MODELS)}"
        )
    return str(model)


def floating_network(value: str) -> ipaddress.IPv4Network | None:
    """The operator's floating pool setting (empty: none). The messages leave
    out the variable: the settings reader, which checks it at start, names it."""
    if not value:
        return None
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"not a valid CIDR: {exc}") from exc
    if network.prefixlen > MAX_PREFIXLEN:
        raise ValueError(f"smaller than a /{MAX_PREFIXLEN}")
    return network


def floating_router(network: ipaddress.IPv4Network, value: str) -> str:
    """The upstream router on the floating network (default: its first host)."""
    if not value:
        return str(network.network_address + 1)
    address = ipaddress.IPv4Address(value)
    if address not in network:
        raise ValueError(f"SFCLOUD_FLOATING_ROUTER={value} is not in {network}")
    return str(address)


def next_interface_order(taken: Iterable[int]) -> int:
    """The order of a NIC added next to NICs of these orders: the one after
    the highest, or once that would pass MAX_INTERFACE_ORDER, the lowest free
    (an instance has at most MAX_INTERFACES, so one always is)."""
    orders = set(taken)
    following = max(orders, default=-1) + 1
    if following <= MAX_INTERFACE_ORDER:
        return following
    return min(set(range(MAX_INTERFACE_ORDER + 1)) - orders)
