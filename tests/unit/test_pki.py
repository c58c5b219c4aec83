"""The cloud's CA (deploy.pki) and how the parts load what it issues
(cloudstate.tls): private files, what `make run` issues and re-issues,
renewal that keeps the key, and contexts that follow their files."""

from __future__ import annotations

import datetime
import grp
import ipaddress
import os
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cloudstate import tls
from deploy import pki
from deploy.pki import CertificateAuthority, Subject, ensure_all_in_one

NOBODY_GID = grp.getgrnam("nogroup").gr_gid

LOOPBACK = ipaddress.ip_address("127.0.0.1")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def public_key(path: Path) -> bytes:
    return certificate(path).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def all_in_one(directory: Path, node_ip: str = "127.0.0.1",
               renew_days: float = 30) -> list[pki.Issued]:
    return ensure_all_in_one(directory, node="n1", node_ip=node_ip, etcd_member="sfcloud",
                             portal_ips=["127.0.0.1"], renew_days=renew_days)


def test_make_run_gets_a_private_ca_and_every_certificate_once(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    issued = all_in_one(directory)
    assert {i.path.name for i in issued} == {"etcd-sfcloud.crt", "portal.crt", "agent-n1.crt"}
    assert mode(directory) == 0o700
    assert mode(directory / "ca.key") == 0o600
    for name in ("etcd-sfcloud", "portal", "agent-n1"):
        assert mode(directory / f"{name}.key") == 0o600
        assert mode(directory / f"{name}.crt") == 0o644
    agent = certificate(directory / "agent-n1.crt")
    assert agent.subject.rfc4514_string() == "CN=n1,OU=agent"
    sans = agent.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [LOOPBACK]
    for name in ("ca", "portal"):
        key = certificate(directory / f"{name}.crt").public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    # The next start finds everything in date and issues nothing.
    assert all_in_one(directory) == []


def test_a_new_address_or_a_near_expiry_issues_again_with_the_same_key(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    all_in_one(directory)
    key_before = public_key(directory / "agent-n1.crt")
    issued = all_in_one(directory, node_ip="10.0.0.11")
    assert [i.path.name for i in issued] == ["agent-n1.crt"]
    sans = certificate(directory / "agent-n1.crt").extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.IPAddress)
    # The new address, and the one it served on before, kept.
    assert set(sans) == {LOOPBACK, ipaddress.ip_address("10.0.0.11")}
    assert public_key(directory / "agent-n1.crt") == key_before
    # Everything expires within 400 days: a renewal window that long renews all.
    assert len(all_in_one(directory, renew_days=400)) == 3


def test_renewal_keeps_the_key_subject_and_addresses(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "pki")
    ca.ensure()
    ca.issue(Subject(tls.ROLE_ETCD, "e1", (LOOPBACK,), ("localhost",)))
    path = tmp_path / "pki" / "etcd-e1.crt"
    before, key_before = certificate(path), public_key(path)
    assert ca.renew(within_days=30) == []  # a year left
    renewed = ca.renew(within_days=0, everything=True)
    assert [i.path for i in renewed] == [path]
    after = certificate(path)
    assert after.serial_number != before.serial_number
    assert after.subject == before.subject and public_key(path) == key_before
    assert after.not_valid_after_utc >= before.not_valid_after_utc
    assert after.extensions.get_extension_for_class(x509.SubjectAlternativeName) == \
        before.extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_half_a_ca_is_refused_rather_than_replaced(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "pki")
    ca.ensure()
    (tmp_path / "pki" / "ca.key").unlink()
    with pytest.raises(pki.PkiError, match="half a CA"):
        ca.ensure()


def test_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = str(tmp_path / "pki")
    assert pki.main(["--dir", directory, "init"]) == 0
    assert pki.main(["--dir", directory, "issue", "agent", "n2", "--ip", "10.0.0.12"]) == 0
    assert pki.main(["--dir", directory, "issue", "agent"]) == 1  # which node?
    assert pki.main(["--dir", directory, "issue", "etcd", "e1", "--ip", "nonsense"]) == 1
    assert pki.main(["--dir", directory, "list"]) == 0
    assert pki.main(["--dir", directory, "renew", "--days", "30"]) == 0
    out = capsys.readouterr()
    assert "made the CA" in out.out
    assert "agent   n2" in out.out and "127.0.0.1, 10.0.0.12" in out.out
    assert "nothing expires within 30 days" in out.out
    assert "needs a name" in out.err and "nonsense" in out.err


def test_a_monitor_only_connects_and_serves_on_no_address(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "pki"
    assert pki.main(["--dir", str(directory), "init"]) == 0
    assert pki.main(["--dir", str(directory), "issue", "monitor", "prometheus"]) == 0
    cert = certificate(directory / "monitor-prometheus.crt")
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):  # no address, not even loopback
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert tls.named(cert).peer == tls.Peer(tls.ROLE_MONITOR, "prometheus")
    assert mode(directory / "monitor-prometheus.key") == 0o600
    assert pki.main(["--dir", str(directory), "issue", "monitor", "p2", "--ip", "10.0.0.9"]) == 1
    assert pki.main(["--dir", str(directory), "issue", "monitor"]) == 1
    assert not (directory / "monitor-p2.crt").exists()
    err = capsys.readouterr().err
    assert "serves on no address" in err and "needs a name" in err
    # Renewal keeps it what it is.
    [renewed] = [issued for issued in CertificateAuthority(directory).renew(
        within_days=0, everything=True) if issued.subject.role == tls.ROLE_MONITOR]
    assert renewed.subject == Subject(tls.ROLE_MONITOR, "prometheus")


def _dns(path: Path) -> list[str]:
    try:
        sans = certificate(path).extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(sans.get_values_for_type(x509.DNSName))


def test_the_parts_name_what_etcd_wants_of_its_clients_and_a_monitor_does_not(
        tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    all_in_one(directory)
    for name in ("etcd-sfcloud", "portal", "agent-n1"):
        assert tls.ETCD_CLIENT_NAME in _dns(directory / f"{name}.crt"), name
    assert _dns(directory / "etcd-sfcloud.crt") == ["localhost", tls.ETCD_CLIENT_NAME]
    ca = CertificateAuthority(directory)
    ca.issue(Subject(tls.ROLE_MONITOR, "prometheus"))
    assert _dns(directory / "monitor-prometheus.crt") == []
    ca.renew(within_days=0, everything=True)
    assert _dns(directory / "monitor-prometheus.crt") == []
    assert tls.ETCD_CLIENT_NAME in _dns(directory / "portal.crt")


def test_a_certificate_from_before_etcds_check_is_issued_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "pki"
    all_in_one(directory)
    ca = CertificateAuthority(directory)
    # As an older CA wrote it: the same key, no ETCD_CLIENT_NAME.
    with monkeypatch.context() as patched:
        patched.setattr(pki, "with_etcd_access", lambda subject: subject)
        ca.issue(Subject(tls.ROLE_AGENT, "n1", (LOOPBACK,)))
    assert tls.ETCD_CLIENT_NAME not in _dns(directory / "agent-n1.crt")
    with pytest.raises(tls.TlsError, match="renew it"):
        tls.require(tls.agent(directory, "n1"), role=tls.ROLE_AGENT, name="n1")
    # make run's next start issues it again, with the name.
    assert [i.path.name for i in all_in_one(directory)] == ["agent-n1.crt"]
    tls.require(tls.agent(directory, "n1"), role=tls.ROLE_AGENT, name="n1")


def test_a_part_checks_its_certificate_at_start(tmp_path: Path) -> None:
    all_in_one(tmp_path / "pki")
    credentials = tls.agent(tmp_path / "pki", "n1")
    tls.require(credentials, role=tls.ROLE_AGENT, name="n1", ip="127.0.0.1")
    with pytest.raises(tls.TlsError, match="does not cover 10.0.0.11.*deploy.pki issue agent n1"):
        tls.require(credentials, role=tls.ROLE_AGENT, name="n1", ip="10.0.0.11")
    with pytest.raises(tls.TlsError, match="is for agent n1, not agent n2"):
        tls.require(credentials, role=tls.ROLE_AGENT, name="n2")
    with pytest.raises(tls.TlsError, match="node n3's agent's certificate is missing"):
        tls.require(tls.agent(tmp_path / "pki", "n3"), role=tls.ROLE_AGENT, name="n3")


def test_contexts_follow_their_files_and_keep_the_last_good_ones(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tls, "RECHECK_INTERVAL", 0.0)
    directory = tmp_path / "pki"
    all_in_one(directory)
    source = tls.ClientTls(tls.portal(directory))
    first = source.current()
    assert source.current() is first  # nothing changed: the same context
    CertificateAuthority(directory).renew(within_days=0, everything=True)
    second = source.current()
    assert second is not first
    # A key that does not match the certificate (a hand edit gone wrong):
    # the last good context stays in use.
    (directory / "portal.key").write_bytes((directory / "agent-n1.key").read_bytes())
    os.utime(directory / "portal.key")
    assert source.current() is second
    assert isinstance(second, ssl.SSLContext)


def test_a_certificate_never_outlives_its_ca(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "pki")
    ca.ensure()
    issued = ca.issue(Subject(tls.ROLE_PORTAL, "portal", (LOOPBACK,)), days=100 * 365)
    assert issued.not_after <= ca.ca_certificate().not_valid_after_utc
    assert issued.not_after - datetime.datetime.now(datetime.UTC) > datetime.timedelta(days=3000)


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, hostname: str) -> str | None:
    """Run a TLS handshake in memory; None if it succeeded, else the error
    that ended it (on whichever side noticed first)."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client_side = client.wrap_bio(c_in, c_out, server_hostname=hostname)
    server_side = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, side, outbox, peer_inbox in (("client", client_side, c_out, s_in),
                                               ("server", server_side, s_out, c_in)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLError as exc:
                    return f"{name}: {getattr(exc, 'verify_message', '') or exc.reason}"
            data = outbox.read()
            if data:
                peer_inbox.write(data)
        if all(done.values()):
            # TLS 1.3: the server checks the client's certificate after the
            # client thinks it is done; one more read tells.
            try:
                client_side.read(1)
            except ssl.SSLWantReadError:
                return None
            except ssl.SSLError as exc:
                return f"client: {exc.reason or exc}"
    raise AssertionError("the handshake did not finish")


def test_a_revoked_certificate_is_refused_at_both_ends_and_never_renewed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tls, "RECHECK_INTERVAL", 0.0)
    directory = tmp_path / "pki"
    all_in_one(directory)
    ca = CertificateAuthority(directory)
    ca.issue(Subject(tls.ROLE_AGENT, "n2", (LOOPBACK,)))
    assert ca.crl_path.exists() and ca.revoked_serials() == []
    kept = {"ca": (directory / "ca.crt").read_bytes(),
            "cert": (directory / "agent-n2.crt").read_bytes(),
            "key": (directory / "agent-n2.key").read_bytes()}
    # n2 as it still holds its files after leaving the cloud.
    gone = tmp_path / "n2"
    gone.mkdir()
    for name, data in (("ca.crt", kept["ca"]), ("agent-n2.crt", kept["cert"]),
                       ("agent-n2.key", kept["key"])):
        (gone / name).write_bytes(data)
    n2 = tls.agent(gone, "n2")
    server = tls.ServerTls(tls.agent(directory, "n1"))
    portal = tls.ClientTls(tls.portal(directory))
    assert _handshake(server.listening, tls.client_context(n2), "127.0.0.1") is None
    n2_server = tls.server_context(n2)
    assert _handshake(n2_server, portal.current(), "127.0.0.1") is None

    ca.revoke(Subject(tls.ROLE_AGENT, "n2"))
    assert len(ca.revoked_serials()) == 1
    assert ca.is_revoked(kept["cert"])
    assert not (directory / "agent-n2.crt").exists()  # moved to revoked/
    assert [p.name.split(".")[0] for p in (directory / "revoked").iterdir()] == \
        ["agent-n2", "agent-n2"]
    # As a client of n1's server (which follows the new list without a restart)...
    refused = _handshake(server.listening, tls.client_context(n2), "127.0.0.1")
    assert refused is not None and "revoked" in refused.lower()
    # ...and as a server the portal would connect to.
    refused = _handshake(n2_server, portal.current(), "127.0.0.1")
    assert refused is not None and "revoked" in refused.lower()
    # A part still in the cloud is let in as before.
    assert _handshake(server.listening, portal.current(), "127.0.0.1") is None
    # Renewing everything does not bring it back; revoking again says so.
    assert "agent-n2.crt" not in {i.path.name for i in ca.renew(within_days=0, everything=True)}
    with pytest.raises(pki.PkiError, match="no certificate for agent n2"):
        ca.revoke(Subject(tls.ROLE_AGENT, "n2"))


def test_a_ca_from_before_revocation_gets_an_empty_list(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    all_in_one(directory)
    (directory / "ca.crl").unlink()
    # Without a list nothing is checked, and every part still connects.
    context = tls.client_context(tls.portal(directory))
    assert not context.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF
    all_in_one(directory)
    assert (directory / "ca.crl").exists()
    assert tls.client_context(tls.portal(directory)).verify_flags & ssl.VERIFY_CRL_CHECK_LEAF


def test_files_keep_their_mode_and_owner_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o077)  # as make run and every sfcloud process set it
    try:
        public = tmp_path / "ca.crl"
        pki._write_private(public, b"list", 0o644)
        assert stat.S_IMODE(public.stat().st_mode) == 0o644
        lent = tmp_path / "portal.key"
        pki._write_private(lent, b"one", 0o600)
        os.chown(lent, 0, NOBODY_GID)
        lent.chmod(0o640)  # lent to the portal's group, as make run does
        pki._write_private(lent, b"two", 0o600)  # renewed
        assert lent.read_bytes() == b"two"
        assert (lent.stat().st_gid, stat.S_IMODE(lent.stat().st_mode)) == (NOBODY_GID, 0o640)
    finally:
        os.umask(previous)
