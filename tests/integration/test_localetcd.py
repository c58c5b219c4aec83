"""deploy.localetcd: the single-member etcd that `make run` and the tests use,
TLS only, refusing clients without the cloud's certificate; and
deploy.etcdmaint, which gets a full one writing again."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudstate import tls
from cloudstate.etcd import Etcd, EtcdUnavailable
from deploy.localetcd import EtcdStartError, LocalEtcd, free_ports
from deploy.pki import ensure_local_etcd
from tests.support.pki import issue_monitor

pytestmark = [
    pytest.mark.integration,
]


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """Removed afterwards, unlike pytest's own (which keeps the last three runs)."""
    path = Path(tempfile.mkdtemp(prefix="sfcloud-localetcd-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """A CA with the member's certificate and a client's, as `make run` makes."""
    ensure_local_etcd(tmp_path / "pki", "sfcloud")
    return tmp_path / "pki"


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A reaped child is gone; an unreaped one would be a zombie we leaked.
    return Path(f"/proc/{pid}/status").read_text().find("zombie") < 0


async def test_state_survives_stop_and_a_new_runner(tmp_path: Path, pki: Path) -> None:
    data = tmp_path / "etcd" / "data"
    with LocalEtcd(data, pki_dir=pki) as first:
        pid = first.pid
        assert pid is not None and first.endpoint.startswith("https://127.0.0.1:")
        etcd = first.client()
        await etcd.put("/kept", "yes")
        await etcd.close()
    assert not process_exists(pid)

    # Same data directory, other ports: etcd ignores --initial-* and carries on.
    with LocalEtcd(data, pki_dir=pki) as second:
        etcd = second.client()
        kv = await etcd.get("/kept")
        await etcd.close()
    assert kv is not None and kv.value == b"yes"
    assert "serving client traffic" in (tmp_path / "etcd" / "sfcloud.etcd.log").read_text()


def test_kill_and_restart_keep_the_endpoint(tmp_path: Path, pki: Path) -> None:
    server = LocalEtcd(tmp_path / "data", pki_dir=pki)
    try:
        server.start()
        endpoint, pid = server.endpoint, server.pid
        server.restart(kill=True)
        assert server.endpoint == endpoint and server.pid != pid and server.running
        server.kill()
        assert not server.running
        server.kill()  # and again: harmless
        server.stop()
    finally:
        server.stop()


def test_start_fails_with_the_log_tail_when_the_port_is_taken(tmp_path: Path,
                                                              pki: Path) -> None:
    client_port, peer_port = free_ports(2)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", client_port))
        squatter.listen()
        server = LocalEtcd(tmp_path / "data", pki_dir=pki, client_port=client_port,
                           peer_port=peer_port)
        with pytest.raises(EtcdStartError, match="address already in use"):
            server.start(timeout=10)
        assert not server.running


def test_command_has_the_flags_a_small_cloud_needs(tmp_path: Path, pki: Path) -> None:
    command = LocalEtcd(tmp_path / "data", pki_dir=pki, client_port=1111,
                        peer_port=2222).command()
    assert "--listen-client-urls=https://127.0.0.1:1111" in command
    assert "--listen-peer-urls=https://127.0.0.1:2222" in command
    # Client certificates from the cloud's CA, on both ports.
    assert "--client-cert-auth" in command and "--peer-client-cert-auth" in command
    # Of those, the parts' only: a monitor's certificate doesn't name this.
    assert f"--client-cert-allowed-hostname={tls.ETCD_CLIENT_NAME}" in command
    assert f"--trusted-ca-file={pki / 'ca.crt'}" in command
    assert f"--cert-file={pki / 'etcd-sfcloud.crt'}" in command
    assert "--auto-compaction-mode=periodic" in command
    assert "--auto-compaction-retention=1h" in command
    assert "--quota-backend-bytes=4294967296" in command
    assert "--logger=zap" in command
    assert not any("0.0.0.0" in arg for arg in command)


async def test_clients_without_the_clouds_certificate_are_refused(tmp_path: Path,
                                                                  pki: Path) -> None:
    with LocalEtcd(tmp_path / "data", pki_dir=pki) as server:
        url = f"{server.endpoint}/health"
        # Plain HTTP to the TLS port.
        with pytest.raises(OSError):
            _get(url.replace("https://", "http://"), None)
        # TLS, trusting the cloud's CA, but with no certificate of our own.
        with pytest.raises(OSError):
            _get(url, ssl.create_default_context(cafile=str(pki / "ca.crt")))
        # A certificate from a CA of someone's own, named as the portal's.
        ensure_local_etcd(tmp_path / "other", "sfcloud")
        forged = tls.Credentials(pki / "ca.crt", tmp_path / "other/portal.crt",
                                 tmp_path / "other/portal.key")
        with pytest.raises(OSError):
            _get(url, tls.client_context(forged))
        # A monitor's certificate (Prometheus'), signed by the cloud's own CA: it
        # opens an agent's /metrics, never etcd.
        monitor = issue_monitor(pki)
        with pytest.raises(OSError):
            _get(url, tls.client_context(monitor))
        # The same request with the cloud's certificate is answered.
        assert json.loads(_get(url, tls.client_context(server.client_tls))) == {"health": "true"}
        # And so does the gRPC client that sfcloud uses, which a stranger's or a
        # monitor's certificate gets nowhere with.
        etcd = server.client()
        assert await etcd.get("/nothing") is None
        await etcd.close()
        for credentials in (forged, monitor):
            refused = Etcd(server.endpoints, tls=credentials, timeout=2.0)
            with pytest.raises(EtcdUnavailable):
                await refused.get("/nothing")
            await refused.close()


def _get(url: str, context: ssl.SSLContext | None) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=context))
    with opener.open(url, timeout=5) as response:
        return bytes(response.read())


async def test_nospace_is_repaired_by_the_documented_command(tmp_path: Path, pki: Path) -> None:
    """A full etcd refuses every write, even after space is freed, until
    `python -m deploy.etcdmaint repair` compacts, defragments and disarms."""
    quota = 16 * 2**20
    with LocalEtcd(tmp_path / "data", pki_dir=pki, quota_bytes=quota) as server:
        etcd = server.client(timeout=10)
        try:
            # The same key rewritten: every old revision takes space until compacted.
            value = os.urandom(1024 * 1024)
            with pytest.raises(Exception, match="database space exceeded"):  # noqa: PT011
                for _ in range(64):
                    await etcd.put("/big", value)
            assert [alarm.kind for alarm in await etcd.alarms()] == ["NOSPACE"]
            with pytest.raises(Exception, match="database space exceeded"):  # noqa: PT011
                await etcd.put("/small", "x")

            env = {**os.environ, "SFCLOUD_ETCD_ENDPOINTS": server.endpoint,
                   "SFCLOUD_PKI_DIR": str(pki)}
            status = subprocess.run([sys.executable, "-m", "deploy.etcdmaint", "status"],
                                    env=env, capture_output=True, text=True, check=True)
            assert "alarm NOSPACE" in status.stdout, status.stdout
            repaired = subprocess.run([sys.executable, "-m", "deploy.etcdmaint", "repair"],
                                      env=env, capture_output=True, text=True, check=True)
            assert "disarmed NOSPACE" in repaired.stdout, repaired.stdout
            assert "defragmented" in repaired.stdout

            assert await etcd.alarms() == []
            await etcd.put("/small", "x")
            assert (await etcd.member_status()).db_size < quota / 2
        finally:
            await etcd.close()
