"""A CA and certificates for tests, made with the cloud's own ``deploy.pki``.

``make_pki`` issues what a test names into a directory laid out as
``SFCLOUD_PKI_DIR`` is; the ``tls`` helpers turn them into the contexts the
parts use. A second, unrelated CA (``make_pki`` on another directory) stands
for someone who made their own certificates.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from pathlib import Path

from cloudstate import tls
from deploy.pki import CertificateAuthority, Subject

LOOPBACK = ipaddress.ip_address("127.0.0.1")


def make_pki(directory: Path, *, agents: Iterable[str] = (), etcd: Iterable[str] = (),
             portal: bool = True, agent_ips: Iterable[str] = (),
             monitors: Iterable[str] = ()) -> CertificateAuthority:
    """A CA in ``directory`` (made if missing) and the named certificates,
    each serving on 127.0.0.1 (agents also on ``agent_ips``; monitors serve
    nothing)."""
    ca = CertificateAuthority(directory)
    ca.ensure()
    extra = tuple(ipaddress.ip_address(ip) for ip in agent_ips)
    for node in agents:
        ca.issue(Subject(tls.ROLE_AGENT, node, (LOOPBACK, *extra)))
    for member in etcd:
        ca.issue(Subject(tls.ROLE_ETCD, member, (LOOPBACK,), ("localhost",)))
    if portal:
        ca.issue(Subject(tls.ROLE_PORTAL, "portal", (LOOPBACK,)))
    for name in monitors:
        issue_monitor(directory, name)
    return ca


def issue_agent(pki_dir: Path, node: str, *ips: str) -> None:
    """Node ``node``'s agent certificate, serving on 127.0.0.1 and ``ips``."""
    CertificateAuthority(pki_dir).issue(Subject(
        tls.ROLE_AGENT, node, (LOOPBACK, *(ipaddress.ip_address(ip) for ip in ips))))


def issue_monitor(pki_dir: Path, name: str = "prometheus") -> tls.Credentials:
    """A scraper's certificate (as `python -m deploy.pki issue monitor NAME`
    makes it) and the files Prometheus would be given."""
    CertificateAuthority(pki_dir).issue(Subject(tls.ROLE_MONITOR, name))
    return tls.monitor(pki_dir, name)
