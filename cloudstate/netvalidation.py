"""What a valid network, address, MAC or NIC model is.

The API, the pages and the portal's settings check with these, so a bad
value gets the same message wherever it came from.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from cloudstate.validation import ValidationError

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
# Ranges a guest network must never use: they mean something on every host.
_FORBIDDEN = [
    (ipaddress.IPv4Network("0.0.0.0/8"), "is 'this network'"),
    (ipaddress.IPv4Network("127.0.0.0/8"), "is loopback"),
    (ipaddress.IPv4Network("169.254.0.0/16"), "is link-local"),
    (ipaddress.IPv4Network("224.0.0.0/4"), "is multicast"),
    (ipaddress.IPv4Network("240.0.0.0/4"), "is reserved"),
]


def network_name(value: Any, field: str = "name") -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValidationError(
            field,
            f"{value!r} is not a valid network name: use 1-63 letters, digits, dots, hyphens "
            "and underscores, starting with a letter or digit",
        )
    if value.lower() in RESERVED_NAMES:
        raise ValidationError(field, f"{value!r} is reserved for the cloud's floating network")
    return value


def netblock(value: Any, field: str = "netblock") -> ipaddress.IPv4Network:
    """An IPv4 CIDR between /8 and /29. One with host bits set (10.0.0.1/24)
    is refused, naming the network address meant (10.0.0.0/24), as Shaken
    Fist refuses it: silently changing what was typed hides a typo."""
    if not isinstance(value, str) or "/" not in value:
        raise ValidationError(field, f"{value!r} is not a CIDR block such as 10.0.0.0/24")
    try:
        network = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError as exc:
        raise ValidationError(field, f"{value!r} is not a valid CIDR block ({exc})") from exc
    if not isinstance(network, ipaddress.IPv4Network):
        raise ValidationError(field, f"{value!r} is not IPv4; only IPv4 networks are offered")
    if network.prefixlen > MAX_PREFIXLEN:
        raise ValidationError(
            field, f"{value!r} is smaller than a /{MAX_PREFIXLEN}: too few addresses for guests"
        )
    if network.prefixlen < MIN_PREFIXLEN:
        raise ValidationError(field, f"{value!r} is larger than a /{MIN_PREFIXLEN}")
    if network.network_address != ipaddress.ip_interface(value.strip()).ip:
        raise ValidationError(field, f"{value.strip()} has host bits set: the network is "
                                     f"{network}, use that")
    for forbidden, why in _FORBIDDEN:
        if network.overlaps(forbidden):
            raise ValidationError(field, f"{value!r} overlaps {forbidden}, which {why}")
    return network


def address_in(value: Any, network: ipaddress.IPv4Network, field: str = "address") -> str:
    """A host address of ``network`` a guest may have (not the network,
    broadcast or router address)."""
    try:
        address = ipaddress.IPv4Address(str(value).strip())
    except ValueError as exc:
        raise ValidationError(field, f"{value!r} is not an IPv4 address") from exc
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
        raise ValidationError(field, f"{value!r} is not a MAC address such as 02:00:00:12:34:56")
    if int(text[:2], 16) & 1:
        raise ValidationError(field, f"{value!r} is a multicast address; a NIC needs unicast")
    if text == "00:00:00:00:00:00":
        raise ValidationError(field, "the all-zero MAC address can't be used")
    return text


def nic_model(value: Any, field: str = "model") -> str:
    model = value or "virtio"
    if model not in NIC_MODELS:
        raise ValidationError(
            field, f"{value!r} is not offered; use one of {', '.join(NIC_MODELS)}"
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
