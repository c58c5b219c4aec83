"""The cloud's own certificate authority, and the certificates it issues.

``make run`` calls ``ensure_all_in_one`` at every start: the first start
makes the CA and every certificate the one machine needs; later starts issue
what is missing (a new node name, an address not yet covered) and renew what
expires within ``SFCLOUD_CERT_RENEW_DAYS``. A deploy tool for several
machines uses the same functions (or this CLI) on the machine that keeps
the CA, and copies each node's files to it:

    python -m deploy.pki init                          make the CA (once)
    python -m deploy.pki issue agent n2 --ip 10.0.0.12 a node's agent
    python -m deploy.pki issue etcd e1 --ip 10.0.0.11  an etcd member
    python -m deploy.pki issue portal --ip 10.0.0.11   the portal
    python -m deploy.pki issue monitor prometheus      a scraper of the agents' /metrics
    python -m deploy.pki renew [--days N] [--all]      renew what expires soon
    python -m deploy.pki revoke agent n2               a node that left: refused everywhere
    python -m deploy.pki list                          what is there, and until when

Keys are EC P-256. The CA key never leaves this directory; everything is
written 0600 (certificates 0644) by rename, so a reader never sees half a
file. Renewal keeps a certificate's key: only the certificate changes, in
one rename, and every part picks it up at its next connection (etcd reads
its files per connection, sfcloud's contexts follow the files' stat), so a
renewal needs no restart and fails no request.

Revocation: the CA keeps a certificate revocation list (``ca.crl``, made
with the CA, empty at first). ``revoke`` adds a certificate's serial to it
and moves the certificate and its key out of the directory (to
``revoked/``), so no later renewal brings it back. Every server checks it:
etcd (``--client-crl-file``, ``--peer-crl-file``, read at every new
connection), the agents' servers and the portal's events listener, and the
portal and agents as clients of an agent's server (``cloudstate.tls``
follows the file's stat). Copy the new ``ca.crl`` to every machine, as
``sfcloud-deploy remove-node`` does first.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import ipaddress
import os
import secrets
import shutil
import stat
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloudstate import tls
from cloudstate.settings import check_at_start, read

CA_DAYS = 3650
CERT_DAYS = 365
CA_NAME = "sfcloud CA"
_CLOCK_SKEW = datetime.timedelta(minutes=5)  # valid a little before now: clocks differ

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class PkiError(Exception):
    """The CA or a certificate can't be used; the message says what to do."""


@dataclass(frozen=True)
class Subject:
    """What a certificate is for: its role, its name and the addresses it serves on."""

    role: str
    name: str
    ips: tuple[IPAddress, ...] = ()
    dns: tuple[str, ...] = ()

    @property
    def file_stem(self) -> str:
        return "portal" if self.role == tls.ROLE_PORTAL else f"{self.role}-{self.name}"


@dataclass(frozen=True)
class Issued:
    """A certificate found in the directory."""

    path: Path
    subject: Subject
    not_after: datetime.datetime

    def expires_within(self, days: float) -> bool:
        return self.not_after - _now() < datetime.timedelta(days=days)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write_private(path: Path, data: bytes, mode: int) -> None:
    """Write by rename, created with ``mode`` from the start (never briefly
    readable by others), and owned, with the mode, as the file it replaces
    was (a key or a revocation list lent to the portal's group stays readable
    by it when it is renewed, whatever the umask of the renewing process)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        owner = os.stat(path)
    except FileNotFoundError:
        owner = None
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode & 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            if owner is not None and (owner.st_uid, owner.st_gid) != (os.getuid(), os.getgid()):
                os.fchown(out.fileno(), owner.st_uid, owner.st_gid)
            # The umask filtered open's mode: say it again, once the owner is right.
            os.fchmod(out.fileno(), stat.S_IMODE(owner.st_mode) if owner is not None else mode)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{path} is not an EC key")
    return key


def subject_of(cert: x509.Certificate) -> Subject:
    found = tls.named(cert)
    return Subject(role=found.peer.role, name=found.peer.name, ips=found.ips, dns=found.dns)


class CertificateAuthority:
    """The CA in ``directory`` and the certificates it issued there."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.cert_path = self.directory / tls.CA_CERT
        self.key_path = self.directory / tls.CA_KEY
        self.crl_path = self.directory / tls.CA_CRL
        self.revoked_dir = self.directory / "revoked"

    # --- the CA itself -------------------------------------------------------------

    def exists(self) -> bool:
        return self.cert_path.exists() and self.key_path.exists()

    def ensure(self) -> bool:
        """Make the CA if there is none; True if it was made now. A new
        directory is 0700; one that exists keeps its mode (a machine whose
        parts run as several users opens it to 0711, see deploy/README.md)."""
        if not self.directory.exists():
            self.directory.mkdir(parents=True)
            os.chmod(self.directory, 0o700)
        if self.exists():
            return False
        if self.cert_path.exists() or self.key_path.exists():
            raise PkiError(f"{self.directory} holds half a CA (one of {tls.CA_CERT} and "
                           f"{tls.CA_KEY}); restore the other from a backup, or remove both "
                           "and every certificate to start over")
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME),
                          x509.NameAttribute(NameOID.SERIAL_NUMBER, secrets.token_hex(8))])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(self.key_path, _pem_key(key), 0o600)
        _write_private(self.cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        self.ensure_crl()
        return True

    def _loaded(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        if not self.exists():
            raise PkiError(f"no CA in {self.directory}: run `python -m deploy.pki init` there "
                           "(or `make run`, which makes one)")
        return x509.load_pem_x509_certificate(self.cert_path.read_bytes()), \
            _load_key(self.key_path)

    def ca_certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_path.read_bytes())

    # --- revocation ------------------------------------------------------------------

    def ensure_crl(self) -> bool:
        """Write an empty revocation list if there is none (a CA made before
        revocation existed gets one too); True if it was made now."""
        if self.crl_path.exists():
            return False
        self._write_crl([])
        return True

    def revoked_serials(self) -> list[int]:
        if not self.crl_path.exists():
            return []
        crl = x509.load_pem_x509_crl(self.crl_path.read_bytes())
        return [entry.serial_number for entry in crl]

    def revoke(self, subject: Subject) -> Issued:
        """Add ``subject``'s certificate to the revocation list and move its
        files to ``revoked/``. Raises PkiError if there is no such certificate."""
        found = self.find(subject)
        if found is None:
            raise PkiError(f"no certificate for {subject.role} {subject.name} in "
                           f"{self.directory}")
        cert_pem = found.path.read_bytes()
        self.revoke_certificate(cert_pem)
        serial = x509.load_pem_x509_certificate(cert_pem).serial_number
        self.revoked_dir.mkdir(mode=0o700, exist_ok=True)
        stamp = f"{_now():%Y%m%dT%H%M%S}-{serial:x}"
        for path in self.paths(subject):
            if path.exists():
                os.replace(path, self.revoked_dir / f"{path.name}.{stamp}")
        return found

    def revoke_certificate(self, cert_pem: bytes) -> None:
        """Revoke a certificate by its contents (one already replaced in the
        directory, such as a portal key rotated away from a node that left)."""
        cert = x509.load_pem_x509_certificate(cert_pem)
        cert.verify_directly_issued_by(self.ca_certificate())
        serials = self.revoked_serials()
        if cert.serial_number not in serials:
            self._write_crl([*serials, cert.serial_number])

    def is_revoked(self, cert_pem: bytes) -> bool:
        serial = x509.load_pem_x509_certificate(cert_pem).serial_number
        return serial in self.revoked_serials()

    def _write_crl(self, serials: Sequence[int]) -> None:
        ca_cert, ca_key = self._loaded()
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca_cert.subject)
            .last_update(now - _CLOCK_SKEW)
            # OpenSSL refuses every handshake once a CRL's next update has
            # passed: this one is valid as long as the CA, and replaced (by
            # rename) whenever a certificate is revoked.
            .next_update(ca_cert.not_valid_after_utc)
            .add_extension(x509.CRLNumber(len(serials)), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
        )
        for serial in serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial)
                .revocation_date(now).build())
        crl = builder.sign(ca_key, hashes.SHA256())
        _write_private(self.crl_path, crl.public_bytes(serialization.Encoding.PEM), 0o644)

    # --- issuing ---------------------------------------------------------------------

    def paths(self, subject: Subject) -> tuple[Path, Path]:
        return (self.directory / f"{subject.file_stem}.crt",
                self.directory / f"{subject.file_stem}.key")

    def issue(self, subject: Subject, *, new_key: bool = False,
              days: int = CERT_DAYS) -> Issued:
        """Sign a certificate for ``subject``, keeping its existing key unless
        ``new_key``. The cloud's parts serve and connect (serverAuth and
        clientAuth): etcd members are both to each other, agents serve the
        portal and fetch from each other, the portal connects to agents and
        serves their events. A monitor only connects (clientAuth), and
        serves on no address. The parts' certificates also name
        ``tls.ETCD_CLIENT_NAME``, without which etcd refuses a client: a
        monitor's never does."""
        if subject.role not in tls.ROLES:
            raise PkiError(f"no such role {subject.role!r}: one of {', '.join(tls.ROLES)}")
        if subject.role == tls.ROLE_MONITOR and (subject.ips or subject.dns):
            raise PkiError("a monitor's certificate serves on no address: no --ip or --dns")
        subject = with_etcd_access(subject)
        ca_cert, ca_key = self._loaded()
        cert_path, key_path = self.paths(subject)
        if key_path.exists() and not new_key:
            key = _load_key(key_path)
        else:
            key = ec.generate_private_key(ec.SECP256R1())
            _write_private(key_path, _pem_key(key), 0o600)
        now = _now()
        names = [x509.IPAddress(ip) for ip in subject.ips] + \
            [x509.DNSName(name) for name in subject.dns]
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, subject.role),
                x509.NameAttribute(NameOID.COMMON_NAME, subject.name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(min(now + datetime.timedelta(days=days),
                                 ca_cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=True,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(_usages(subject.role)), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        # The key is already in place (kept, or written above), so this one
        # rename is the whole change a reader can see.
        _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return Issued(cert_path, subject, cert.not_valid_after_utc)

    # --- what is there -----------------------------------------------------------------

    def issued(self) -> list[Issued]:
        """Every certificate in the directory that this CA signed."""
        if not self.cert_path.exists():
            return []
        ca_cert = self.ca_certificate()
        found = []
        for path in sorted(self.directory.glob("*.crt")):
            if path == self.cert_path:
                continue
            try:
                cert = x509.load_pem_x509_certificate(path.read_bytes())
                cert.verify_directly_issued_by(ca_cert)
            except (ValueError, TypeError, x509.InvalidSignature):
                continue
            found.append(Issued(path, subject_of(cert), cert.not_valid_after_utc))
        return found

    def find(self, subject: Subject) -> Issued | None:
        cert_path, key_path = self.paths(subject)
        if not key_path.exists():
            return None
        return next((i for i in self.issued() if i.path == cert_path), None)

    def ensure_issued(self, subject: Subject, *, renew_days: float) -> Issued | None:
        """Issue ``subject``'s certificate if it is missing, does not cover
        its addresses, or expires within ``renew_days``; the new one, or None
        if the existing one is fine."""
        subject = with_etcd_access(subject)  # one issued before etcd checked it: again
        current = self.find(subject)
        if (current is not None and not current.expires_within(renew_days)
                and set(subject.ips) <= set(current.subject.ips)
                and set(subject.dns) <= set(current.subject.dns)):
            return None
        if current is not None:
            # Keep whatever it served on before as well: a renewal must not
            # take an address away from a running part.
            subject = Subject(subject.role, subject.name,
                              _union(current.subject.ips, subject.ips),
                              _union(current.subject.dns, subject.dns))
        return self.issue(subject)

    def renew(self, *, within_days: float, everything: bool = False) -> list[Issued]:
        """Re-issue, with the same key, subject and addresses, each certificate
        expiring within ``within_days`` (or all of them)."""
        renewed = []
        for found in self.issued():
            if everything or found.expires_within(within_days):
                renewed.append(self.issue(found.subject))
        return renewed


def with_etcd_access(subject: Subject) -> Subject:
    """``subject`` as the CA writes it: a part that may use etcd also names
    ``tls.ETCD_CLIENT_NAME``, which etcd wants of its clients; a monitor never."""
    if subject.role in tls.ETCD_CLIENTS and tls.ETCD_CLIENT_NAME not in subject.dns:
        return dataclasses.replace(subject, dns=(*subject.dns, tls.ETCD_CLIENT_NAME))
    return subject


def _usages(role: str) -> list[x509.ObjectIdentifier]:
    if role == tls.ROLE_MONITOR:
        return [ExtendedKeyUsageOID.CLIENT_AUTH]
    return [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]


def _union(old: Iterable[object], new: Iterable[object]) -> tuple:  # type: ignore[type-arg]
    merged = list(old)
    merged += [item for item in new if item not in merged]
    return tuple(merged)


LOOPBACK = ipaddress.ip_address("127.0.0.1")


def ensure_local_etcd(pki_dir: Path, member: str, *,
                      renew_days: float = 30) -> CertificateAuthority:
    """A CA, a loopback etcd member's certificate and the portal's (which
    ``deploy.localetcd`` presents to its own member): for a single etcd on
    this machine, as the tests and the benchmarks run one."""
    ca = CertificateAuthority(pki_dir)
    ca.ensure()
    ca.ensure_crl()
    for subject in (Subject(tls.ROLE_ETCD, member, (LOOPBACK,), ("localhost",)),
                    Subject(tls.ROLE_PORTAL, "portal", (LOOPBACK,))):
        ca.ensure_issued(subject, renew_days=renew_days)
    return ca


def ensure_all_in_one(pki_dir: Path, *, node: str, node_ip: str, etcd_member: str,
                      portal_ips: Sequence[str], renew_days: float) -> list[Issued]:
    """What one machine running everything needs: the CA, an etcd member, the
    portal and this node's agent. Returns what was issued now (empty on a
    start with everything in date)."""
    ca = CertificateAuthority(pki_dir)
    ca.ensure()
    ca.ensure_crl()
    wanted = [
        Subject(tls.ROLE_ETCD, etcd_member, (LOOPBACK,), ("localhost",)),
        Subject(tls.ROLE_PORTAL, "portal",
                _union([LOOPBACK], [ipaddress.ip_address(ip) for ip in portal_ips])),
        Subject(tls.ROLE_AGENT, node, _union([ipaddress.ip_address(node_ip)], [LOOPBACK])),
    ]
    issued = [ca.ensure_issued(subject, renew_days=renew_days) for subject in wanted]
    return [i for i in issued if i is not None]


# --- the command line ------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.pki",
                                     description="the cloud's CA and certificates")
    parser.add_argument("--dir", type=Path, help="the PKI directory (default: SFCLOUD_PKI_DIR)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("init", help="make the CA, if there is none")
    issue = commands.add_parser("issue", help="issue (or re-issue) one certificate")
    issue.add_argument("role", choices=tls.ROLES)
    issue.add_argument("name", nargs="?",
                       help="the node, etcd member or monitor (not for portal)")
    issue.add_argument("--ip", action="append", default=[],
                       help="an address it serves on (repeat); 127.0.0.1 is always added "
                            "(not for monitor, which serves nothing)")
    issue.add_argument("--dns", action="append", default=[], help="a DNS name it serves on")
    issue.add_argument("--new-key", action="store_true",
                       help="a new key too (rotation); parts using it reconnect")
    issue.add_argument("--owner", help="the user that runs this part (e.g. sfcloud for the "
                                       "portal, etcd for etcd): its key becomes theirs")
    renew = commands.add_parser("renew", help="renew the certificates that expire soon")
    renew.add_argument("--days", type=float,
                       help="renew those expiring within this many days "
                            "(default: SFCLOUD_CERT_RENEW_DAYS)")
    renew.add_argument("--all", action="store_true", help="renew every certificate now")
    revoke = commands.add_parser("revoke", help="revoke one certificate (a node that left, a "
                                                "key in the wrong hands)")
    revoke.add_argument("role", choices=tls.ROLES)
    revoke.add_argument("name", nargs="?", help="the node, etcd member or monitor")
    commands.add_parser("list", help="every certificate, its addresses and its expiry")
    args = parser.parse_args(argv)
    check_at_start("deploy.pki")
    ca = CertificateAuthority((args.dir or read("SFCLOUD_PKI_DIR")).resolve())
    try:
        return _run(ca, args)
    except PkiError as exc:
        print(f"deploy.pki: {exc}", file=sys.stderr)
        return 1


def _run(ca: CertificateAuthority, args: argparse.Namespace) -> int:
    if args.command == "init":
        print(f"made the CA in {ca.directory}" if ca.ensure()
              else f"{ca.directory} already holds a CA")
    elif args.command == "issue":
        name = "portal" if args.role == tls.ROLE_PORTAL else args.name
        if not name:
            raise PkiError(f"a certificate for {args.role} needs a name (the node, member "
                           "or monitor)")
        try:
            ips = [ipaddress.ip_address(ip) for ip in args.ip]
        except ValueError as exc:
            raise PkiError(str(exc)) from None
        if args.role != tls.ROLE_MONITOR:
            ips = _union([LOOPBACK], ips)
        subject = Subject(args.role, name, tuple(ips), tuple(args.dns))
        issued = ca.issue(subject, new_key=args.new_key)
        if args.owner:
            try:
                shutil.chown(ca.paths(subject)[1], user=args.owner)
            except (LookupError, PermissionError) as exc:
                raise PkiError(f"can't give the key to {args.owner}: {exc}") from None
        print(f"issued {issued.path} (until {issued.not_after:%Y-%m-%d})")
    elif args.command == "revoke":
        name = "portal" if args.role == tls.ROLE_PORTAL else args.name
        if not name:
            raise PkiError(f"which {args.role}? name it")
        revoked = ca.revoke(Subject(args.role, name))
        print(f"revoked {revoked.path.name}; copy {ca.crl_path} to every machine")
    elif args.command == "renew":
        days = args.days if args.days is not None else read("SFCLOUD_CERT_RENEW_DAYS")
        renewed = ca.renew(within_days=days, everything=args.all)
        for issued in renewed:
            print(f"renewed {issued.path} (until {issued.not_after:%Y-%m-%d})")
        if not renewed:
            print(f"nothing expires within {days:g} days")
        _warn_about_ca(ca, days)
    else:
        if ca.cert_path.exists():
            print(f"CA  {ca.cert_path}  until {ca.ca_certificate().not_valid_after_utc:%Y-%m-%d}")
        for found in ca.issued():
            addresses = ", ".join([str(ip) for ip in found.subject.ips] + list(found.subject.dns))
            print(f"{found.subject.role:7} {found.subject.name:20} until "
                  f"{found.not_after:%Y-%m-%d}  {addresses}  {found.path.name}")
    return 0


def _warn_about_ca(ca: CertificateAuthority, days: float) -> None:
    if ca.cert_path.exists():
        left = ca.ca_certificate().not_valid_after_utc - _now()
        if left < datetime.timedelta(days=max(days, 365)):
            print(f"warning: the CA itself expires in {left.days} days; see deploy/README.md "
                  "(Trust) for replacing it", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
