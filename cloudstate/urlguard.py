"""Which URLs the cloud may fetch on a user's behalf (the SSRF guard).

A user hands us a URL and a node agent fetches it from inside the cloud's
network, so a careless fetch would let anyone read the metadata service,
the etcd endpoints or anything else only the hypervisors can reach. The
rule: resolve the host once, exactly as the connection will (so decimal,
hex and octal spellings are seen as the resolver sees them), check every
address it resolves to, and have the caller connect only to the addresses
checked here. Redirects must come back through here, hop by hop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cloudstate.settings import read
from cloudstate.settingtypes import IPNetwork
from cloudstate.validation import shown

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
RESOLVE_TIMEOUT = 10.0

# Cloud metadata services. Most sit inside the link-local range, which is
# refused anyway; these are listed so that an operator who allows, say,
# 100.64.0.0/10 or fd00::/8 for a local mirror does not open them up.
_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, ...
        "169.254.170.2",  # AWS ECS task credentials
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (legacy)
        "fd00:ec2::254",  # AWS over IPv6
    )
)

# IPv6 forms that carry an IPv4 address inside them. Python calls several of
# them global, yet a host or router may translate them to the embedded IPv4
# address, which is exactly what the check must not let through.
_EMBEDDED_V4 = (
    (ipaddress.ip_network("::/96"), "an IPv4-compatible IPv6 address"),
    (ipaddress.ip_network("::ffff:0:0:0/96"), "an IPv4-translated IPv6 address"),
    (ipaddress.ip_network("64:ff9b::/96"), "a NAT64 address"),
    (ipaddress.ip_network("64:ff9b:1::/48"), "a NAT64 address"),
    (ipaddress.ip_network("2002::/16"), "a 6to4 address"),
)
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_SHARED = ipaddress.ip_network("100.64.0.0/10")


class URLRefused(Exception):
    """The URL may not be fetched; the message says why, for the user."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class FetchPolicy:
    """Where fetches may go beyond the public internet.

    ``allowed_networks`` lets an operator reach an internal mirror (and the
    tests reach 127.0.0.0/8); ``allow_file`` is only for image URLs an
    operator registered, never for a URL a user typed.
    """

    allowed_networks: list[IPNetwork] = field(default_factory=list)
    allow_file: bool = False

    @classmethod
    def from_env(cls) -> FetchPolicy:
        return cls(allowed_networks=read("SFCLOUD_FETCH_ALLOW"))

    def allows(self, address: IPAddress) -> bool:
        return any(address in network for network in self.allowed_networks)


async def check_url(url: str, policy: FetchPolicy) -> list[IPAddress]:
    """Return the addresses ``url`` may be fetched from, or raise URLRefused.

    The caller must connect to these addresses and no others: resolving the
    name again could give a different answer (DNS rebinding). A ``file://``
    URL, when allowed, has no addresses and returns an empty list.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise URLRefused(f"{shown(url)} is not a valid URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme == "file":
        if policy.allow_file:
            return []
        raise URLRefused("file:// URLs cannot be fetched: give an http or https URL")
    if scheme not in ("http", "https"):
        raise URLRefused(f"{scheme or 'scheme-less'} URLs cannot be fetched: "
                         "give an http or https URL")
    host = parts.hostname
    if not host:
        raise URLRefused(f"{shown(url)} has no host name")
    # Credentials in a URL end up in etcd and in API output, and
    # "http://trusted@evil/" is a classic way to make a URL look like it
    # points somewhere it doesn't.
    if parts.username is not None or parts.password is not None:
        raise URLRefused(f"the URL for {host} contains a user name or password; "
                         "image URLs may not carry credentials")
    addresses = await _resolve(host, port or (443 if scheme == "https" else 80))
    if not addresses:
        raise URLRefused(f"{host} did not resolve to any address")
    for address in addresses:
        reason = refusal_reason(address, policy)
        if reason:
            named = host if host == str(address) else f"{host} (which resolves to {address})"
            raise URLRefused(f"refusing to fetch from {named}: it is {reason}")
    return addresses


def refusal_reason(address: IPAddress, policy: FetchPolicy) -> str | None:
    """Why ``address`` may not be fetched from, or None if it may."""
    address = unwrap(address)
    # These are refused whatever the operator allowed: nothing legitimate
    # serves images from them, and they are the usual targets.
    if address in _METADATA:
        return "a cloud metadata service address"
    if address.is_unspecified or (address.version == 4 and address in _THIS_NETWORK):
        return "an unspecified address, which reaches this machine"
    if address.is_link_local:
        return "a link-local address, where cloud metadata services live"
    if address.is_multicast:
        return "a multicast address"
    if address.version == 6 and not address.is_loopback:
        for network, words in _EMBEDDED_V4:
            if address in network:
                return f"{words}, which can hide an internal IPv4 address"
    if address.is_global or policy.allows(address):
        return None
    if address.is_loopback:
        return "a loopback address, which reaches this machine"
    if address.version == 4 and address in _SHARED:
        return "a carrier-grade NAT (shared) address, not a public one"
    if address.is_private:
        return "a private network address, not a public one"
    return "not a public internet address"


def unwrap(address: IPAddress) -> IPAddress:
    """``::ffff:a.b.c.d`` is an IPv4 address to the kernel, so judge it as one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


async def _resolve(host: str, port: int) -> list[IPAddress]:
    """Resolve with the system resolver in a thread, as a connection would.

    Kept as a module function so tests can stand in a resolver that lies.
    """
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT)
    except (OSError, UnicodeError) as exc:
        raise URLRefused(f"{host} could not be resolved: {exc}") from exc
    except TimeoutError as exc:
        raise URLRefused(f"{host} could not be resolved: the name lookup timed out") from exc
    return _dedupe(unwrap(ipaddress.ip_address(info[4][0])) for info in infos)


def _dedupe(addresses: Iterable[IPAddress]) -> list[IPAddress]:
    return list(dict.fromkeys(addresses))
