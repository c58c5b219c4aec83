"""TLS between the cloud's parts: whose certificate is where, and contexts
that pick up renewed certificates without a restart.

Every link between sfcloud's parts (etcd's clients and peers, the portal's
requests to an agent's server, an agent's copy of a snapshot from another,
an agent's events to the portal) is TLS with a certificate at both ends,
each signed by the cloud's own CA (``deploy.pki`` makes it and issues them).
Nothing here can sign: a portal or an agent only ever holds the CA's
certificate and its own certificate and key.

Layout of a PKI directory (``SFCLOUD_PKI_DIR``, ``pki/`` in the state
directory by default); on a machine that runs several parts, as ``make run``
does, they share one:

    ca.crt                    the cloud's CA certificate (public)
    ca.crl                    the certificates the CA revoked (public); every
                              part refuses a peer listed there
    ca.key                    the CA's key: only where certificates are issued
    portal.crt, portal.key    the portal: etcd client, agents' client, events server
    agent-<node>.crt, .key    a node agent: etcd client, its server, its events client
    etcd-<member>.crt, .key   an etcd member: client and peer server, peer client
    monitor-<name>.crt, .key  a scraper (Prometheus): reads the agents' /metrics, nothing else

A certificate says what it belongs to in its subject: the organizational
unit is the role (``portal``, ``agent``, ``etcd``, ``monitor``) and the
common name the node, member or scraper (``portal`` for the portal). Servers
use the role to refuse the wrong kind of peer, e.g. an etcd member's
certificate at an agent's door, or a monitor's anywhere but /metrics. etcd
can't read roles: it wants ``ETCD_CLIENT_NAME`` among a client's names,
which only the parts' certificates carry.

Renewal writes a new certificate over the old one, by rename, for the same
key (``deploy.pki``), so a reader never sees a certificate and a key that do
not match. Readers notice the change by the files' stat and build a fresh
context for the next connection; connections already open carry on.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
CA_CRL = "ca.crl"

ROLE_PORTAL = "portal"
ROLE_AGENT = "agent"
ROLE_ETCD = "etcd"
# Least privilege: a client only (it serves nothing), let in by the agents'
# token routes (/metrics) and refused everywhere else.
ROLE_MONITOR = "monitor"
ROLES = (ROLE_PORTAL, ROLE_AGENT, ROLE_ETCD, ROLE_MONITOR)

# etcd trusts the whole CA, so it must tell a monitor's certificate from the
# parts' by something the certificate says: it lets in only client
# certificates that name ETCD_CLIENT_NAME (``--client-cert-allowed-hostname``),
# which the CA writes into every certificate of these roles and never into a
# monitor's. (.invalid, RFC 6761: a name that resolves nowhere, so naming it
# serves nothing.)
ETCD_CLIENT_NAME = "etcd-client.sfcloud.invalid"
ETCD_CLIENTS = (ROLE_PORTAL, ROLE_AGENT, ROLE_ETCD)

# How often a context source looks at its files' stat at most: a few stat()s
# per new connection would be cheap too, but there is no need.
RECHECK_INTERVAL = 1.0


class TlsError(Exception):
    """A part's certificate files are missing or unusable; the message says
    which and how to make them."""


@dataclass(frozen=True)
class Credentials:
    """One part's TLS files: the CA to trust, its certificate and its key."""

    ca: Path
    cert: Path
    key: Path
    # What the certificate is for, for messages ("the portal", "node n1's agent").
    label: str = "this part"

    @property
    def crl(self) -> Path:
        """The CA's revocation list, beside its certificate. Optional: a PKI
        directory from before revocation has none, and nothing is checked."""
        return self.ca.with_name(CA_CRL)

    def stamp(self) -> tuple[tuple[int, int, int], ...]:
        """Changes when any of the files is replaced or rewritten (the
        revocation list too: a newly revoked peer is refused from the next
        connection on)."""
        found = []
        for path in (self.ca, self.cert, self.key, self.crl):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                found.append((0, 0, 0))
            else:
                found.append((st.st_ino, st.st_mtime_ns, st.st_size))
        return tuple(found)

    def check(self) -> None:
        """Raise TlsError naming what is missing or unreadable."""
        for what, path in (("the cloud's CA certificate", self.ca),
                           (f"{self.label}'s certificate", self.cert),
                           (f"{self.label}'s key", self.key)):
            try:
                with open(path, "rb"):
                    pass
            except FileNotFoundError:
                raise TlsError(f"{what} is missing: {path} (`make run` makes it; elsewhere "
                               "`python -m deploy.pki issue ...` on the machine with the CA)"
                               ) from None
            except PermissionError:
                raise TlsError(f"{what} at {path} is not readable by this user "
                               f"(uid {os.getuid()})") from None

    def read(self) -> tuple[bytes, bytes, bytes]:
        """(CA, certificate, key) as PEM bytes, read consistently: a renewal
        that replaces a file while we read makes us read again."""
        self.check()
        for _ in range(5):
            before = self.stamp()
            data = (self.ca.read_bytes(), self.cert.read_bytes(), self.key.read_bytes())
            if self.stamp() == before:
                return data
            time.sleep(0.05)
        raise TlsError(f"{self.label}'s certificate files keep changing while being read")


def portal(pki_dir: Path) -> Credentials:
    return Credentials(pki_dir / CA_CERT, pki_dir / "portal.crt", pki_dir / "portal.key",
                       label="the portal")


def agent(pki_dir: Path, node: str) -> Credentials:
    return Credentials(pki_dir / CA_CERT, pki_dir / f"agent-{node}.crt",
                       pki_dir / f"agent-{node}.key", label=f"node {node}'s agent")


def etcd_member(pki_dir: Path, member: str) -> Credentials:
    return Credentials(pki_dir / CA_CERT, pki_dir / f"etcd-{member}.crt",
                       pki_dir / f"etcd-{member}.key", label=f"etcd member {member}")


def monitor(pki_dir: Path, name: str) -> Credentials:
    return Credentials(pki_dir / CA_CERT, pki_dir / f"monitor-{name}.crt",
                       pki_dir / f"monitor-{name}.key", label=f"monitor {name}")


# --- who is at the other end ---------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    """The verified subject of the certificate the other end presented."""

    role: str
    name: str

    def __str__(self) -> str:
        return f"{self.role} {self.name}"


def peer_of(peercert: dict[str, Any] | None) -> Peer | None:
    """The role and name in a verified certificate (``getpeercert()``'s dict),
    or None if it names neither."""
    if not peercert:
        return None
    fields: dict[str, str] = {}
    for rdn in peercert.get("subject", ()):
        for name, value in rdn:
            fields.setdefault(name, value)
    role, name = fields.get("organizationalUnitName"), fields.get("commonName")
    if role not in ROLES or not name:
        return None
    return Peer(role=role, name=name)


def peer_from_transport(transport: Any) -> Peer | None:
    """The peer of an asyncio transport (aiohttp's ``request.transport``,
    websockets' ``connection.transport``)."""
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    return peer_of(ssl_object.getpeercert()) if ssl_object is not None else None


@dataclass(frozen=True)
class Named:
    """What a certificate says it is for, and the addresses it serves on."""

    peer: Peer
    ips: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]
    dns: tuple[str, ...]


def named(cert: Any) -> Named:
    """The role, name and addresses of a ``cryptography`` certificate."""
    from cryptography import x509  # noqa: PLC0415 - only where certificates are read whole
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    def first(oid: x509.ObjectIdentifier) -> str:
        found = cert.subject.get_attributes_for_oid(oid)
        return str(found[0].value) if found else ""

    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ips = tuple(sans.get_values_for_type(x509.IPAddress))
        dns = tuple(sans.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        ips, dns = (), ()
    return Named(Peer(role=first(NameOID.ORGANIZATIONAL_UNIT_NAME),
                      name=first(NameOID.COMMON_NAME)), ips, dns)


def require(credentials: Credentials, *, role: str, name: str, ip: str | None = None) -> None:
    """Check, at a part's start, that its certificate is the one it must
    present: its role and name, and the address it serves on (a portal that
    dials the node's address would otherwise fail to verify it, much later
    and far from here)."""
    from cryptography import x509  # noqa: PLC0415 - only at start

    credentials.check()
    try:
        found = named(x509.load_pem_x509_certificate(credentials.cert.read_bytes()))
    except ValueError as exc:
        raise TlsError(f"{credentials.cert} is not a PEM certificate: {exc}") from None
    if found.peer != Peer(role, name):
        raise TlsError(f"{credentials.cert} is for {found.peer}, not {role} {name}")
    if role in ETCD_CLIENTS and ETCD_CLIENT_NAME not in found.dns:
        raise TlsError(f"{credentials.cert} predates etcd's check of its clients (it does not "
                       f"name {ETCD_CLIENT_NAME}) and etcd would refuse it; renew it: "
                       "`python -m deploy.pki renew --all` (make run does this by itself)")
    if ip is not None and ipaddress.ip_address(ip) not in found.ips:
        raise TlsError(f"{credentials.cert} does not cover {ip}, the address {role} {name} "
                       f"serves on; issue it again: `python -m deploy.pki issue {role} "
                       f"{name} --ip {ip}` (make run does this by itself)")


# --- contexts that follow the files --------------------------------------------------


def _base_context(purpose: int, credentials: Credentials) -> ssl.SSLContext:
    context = ssl.SSLContext(purpose)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(cafile=str(credentials.ca))
    if credentials.crl.exists():
        # A peer whose certificate the CA revoked (a node that was removed)
        # fails the handshake, at either end.
        context.load_verify_locations(cafile=str(credentials.crl))
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    context.load_cert_chain(certfile=str(credentials.cert), keyfile=str(credentials.key))
    return context


def client_context(credentials: Credentials) -> ssl.SSLContext:
    """For connecting to another part: verifies the server's certificate
    (signed by the CA, naming the address we dial) and presents ours."""
    context = _base_context(ssl.PROTOCOL_TLS_CLIENT, credentials)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def server_context(credentials: Credentials) -> ssl.SSLContext:
    """For a server that only talks to the cloud's parts: a client without a
    certificate signed by the CA fails the handshake."""
    context = _base_context(ssl.PROTOCOL_TLS_SERVER, credentials)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def open_server_context(credentials: Credentials) -> ssl.SSLContext:
    """For the one server a machine without the cloud's keys may reach (the
    portal's join listener): the server's certificate as usual, no client
    certificate asked for; what lets a caller in is checked above TLS."""
    context = _base_context(ssl.PROTOCOL_TLS_SERVER, credentials)
    context.verify_mode = ssl.CERT_NONE
    return context


class ContextSource:
    """The current SSLContext for one part's files, rebuilt when they change.

    A failed rebuild (a file half replaced by hand, a key that does not match)
    keeps the last good context and says so in the log; the next change is
    tried again. The first build must succeed: a part without usable
    credentials does not start.
    """

    def __init__(self, credentials: Credentials,
                 build: Callable[[Credentials], ssl.SSLContext]):
        self.credentials = credentials
        self._build = build
        self._lock = threading.Lock()
        credentials.check()
        try:
            self._context = build(credentials)
        except (ssl.SSLError, OSError) as exc:
            raise TlsError(f"{credentials.label}'s certificate files are unusable: {exc}"
                           ) from exc
        self._stamp = credentials.stamp()
        self._checked = time.monotonic()

    def current(self) -> ssl.SSLContext:
        now = time.monotonic()
        if now - self._checked < RECHECK_INTERVAL:
            return self._context
        with self._lock:
            self._checked = now
            stamp = self.credentials.stamp()
            if stamp != self._stamp:
                try:
                    self._context = self._build(self.credentials)
                except (ssl.SSLError, OSError) as exc:
                    log.warning("%s's certificate files changed but can't be used (%s); "
                                "keeping the previous ones", self.credentials.label, exc)
                else:
                    log.info("%s's certificate files changed; new connections use them",
                             self.credentials.label)
                    self._stamp = stamp
        return self._context


class ClientTls(ContextSource):
    """Client contexts for one part (``current()`` per connection)."""

    def __init__(self, credentials: Credentials):
        super().__init__(credentials, client_context)


class ServerTls(ContextSource):
    """A listening context whose every new connection gets the current
    certificate: the SNI callback (which runs for every handshake, with or
    without a server name) swaps in the freshest context."""

    def __init__(self, credentials: Credentials,
                 build: Callable[[Credentials], ssl.SSLContext] = server_context):
        super().__init__(credentials, build)
        self.listening = build(credentials)
        self.listening.sni_callback = self._choose

    def _choose(self, ssl_object: Any, _server_name: str | None,
                _context: ssl.SSLContext) -> None:
        ssl_object.context = self.current()
