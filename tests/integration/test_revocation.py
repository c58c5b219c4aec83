"""A revoked certificate (a node that left the cloud) is refused by etcd at
once, without a restart, while the parts still in the cloud carry on.

The agents' servers and the portal's events listener use the same list
through ``cloudstate.tls`` (tests/unit/test_pki.py shakes hands with them);
the lab (tests/lab) shows all three refusing a removed node.
"""

from __future__ import annotations

import ipaddress
import shutil
from pathlib import Path

import pytest

from cloudstate import tls
from cloudstate.etcd import Etcd, EtcdUnavailable
from deploy.localetcd import LocalEtcd
from deploy.pki import CertificateAuthority, Subject
from tests.support.cloud import run_async

pytestmark = pytest.mark.integration


def test_etcd_refuses_a_revoked_certificate_without_a_restart(
        private_etcd_server: LocalEtcd, tmp_path: Path) -> None:
    ca = CertificateAuthority(private_etcd_server.pki_dir)
    name = f"leaving-{tmp_path.name[-6:]}"
    ca.issue(Subject(tls.ROLE_AGENT, name, (ipaddress.ip_address("127.0.0.1"),)))
    # What the node keeps after it was removed: its key and certificate.
    kept = tmp_path / "kept"
    kept.mkdir()
    for file in ("ca.crt", f"agent-{name}.crt", f"agent-{name}.key"):
        shutil.copy(ca.directory / file, kept / file)
    pid = private_etcd_server.pid

    async def put_as(credentials: tls.Credentials, value: str) -> int:
        etcd = Etcd(private_etcd_server.endpoints, tls=credentials, timeout=3.0)
        try:
            return await etcd.put(f"/revocation-test/{name}", value)
        finally:
            await etcd.close()

    assert run_async(put_as(tls.agent(kept, name), "before")) > 0
    ca.revoke(Subject(tls.ROLE_AGENT, name))
    with pytest.raises(EtcdUnavailable):
        run_async(put_as(tls.agent(kept, name), "after"))
    # The portal, still in the cloud, writes as before; etcd was not restarted.
    assert run_async(put_as(tls.portal(ca.directory), "portal")) > 0
    assert private_etcd_server.pid == pid and private_etcd_server.running
