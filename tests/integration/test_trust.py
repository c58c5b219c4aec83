"""Trust between the cloud's parts, on a running cloud (issue 10's evidence).

- A local user without the cloud's keys (``nobody``) gets nothing from etcd,
  the agent's server or the portal's events listener: each refuses in the
  TLS handshake. Root, with the cloud's certificates, gets answers.
- Records planted in etcd with the cloud's certificate, each with one field
  that would reach a path, a command or the domain XML, are refused by the
  agent: the error is on the instance (or network, or blob), and nothing is
  made for them, inside the instance directory or out of it, nor fetched.
- Every certificate renewed while requests run through every link: none fails,
  and the servers present the new certificates at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import ssl
import subprocess
import textwrap
import threading
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any

import pytest
import websockets

from cloudstate import signing, tls
from cloudstate.consoles import AGENT_GRANT_PURPOSE, consolelog_path, grant_claims
from cloudstate.model import Blob, Disk, DiskSource, InstanceSpec, NetworkSpec
from deploy.pki import CertificateAuthority
from tests.support.cloud import Cloud, run_async, wait_for

pytestmark = pytest.mark.integration

# Run by `nobody` with the system's Python: the standard library only, and no
# file of the cloud's (it could not read them anyway).
PROBE = textwrap.dedent(r'''
    import json, socket, ssl, sys, urllib.error, urllib.request
    etcd, agent, events, key = sys.argv[1:5]
    results = {}
    def attempt(name, call):
        try:
            results[name] = "answered: " + call()
        except urllib.error.HTTPError as exc:
            results[name] = f"answered: HTTP {exc.code}"
        except Exception as exc:
            results[name] = f"refused: {type(exc).__name__}: {exc}"
    # No CA to check the servers with: whoever they are, we have no certificate.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=context))
    def post(url):
        request = urllib.request.Request(url, data=b'{"key": "AA==", "count_only": true}',
                                         method="POST")
        with opener.open(request, timeout=5) as response:
            return response.read().decode()[:200]
    def get(url, headers={}):
        request = urllib.request.Request(url, headers=headers)
        with opener.open(request, timeout=5) as response:
            return f"HTTP {response.status}"
    attempt("etcd over http", lambda: post(f"http://{etcd}/v3/kv/range"))
    attempt("etcd over https", lambda: post(f"https://{etcd}/v3/kv/range"))
    attempt("agent server", lambda: get(f"https://{agent}/"))
    attempt("events socket", lambda: get(f"https://{events}/ws/agent/events/", {
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}))
    attempt("the portal's key", lambda: open(key).read()[:10])
    print(json.dumps(results))
''')


def node_address(cloud: Cloud, node: str | None = None) -> str:
    kv = cloud.etcd_call(lambda etcd: etcd.get(cloud.keys.node(node or cloud.node)))
    assert kv is not None
    info = json.loads(kv.value)
    return f"{info['ip']}:{info['agent_port']}"


def etcd_address(cloud: Cloud) -> str:
    return cloud.env["SFCLOUD_ETCD_ENDPOINTS"].removeprefix("https://")


async def agent_get(cloud: Cloud, path: str, context: ssl.SSLContext) -> int:
    """GET from the agent's server, with a grant, as the portal does."""
    import aiohttp  # noqa: PLC0415 - only here

    secret = cloud.env["SFCLOUD_CLUSTER_SECRET"].encode()
    grant = signing.sign(secret, AGENT_GRANT_PURPOSE,
                         grant_claims(node=cloud.node, method="GET", path=path), 30)
    async with aiohttp.ClientSession() as http, http.get(
            f"https://{node_address(cloud)}{path}", ssl=context,
            headers={"Authorization": f"Bearer {grant}"}) as response:
        return response.status


async def send_event(cloud: Cloud, message: str) -> list[str]:
    """One event, as this cloud's agent sends them: its certificate, a fresh token."""
    secret = cloud.env["SFCLOUD_CLUSTER_SECRET"].encode()
    token = signing.sign(secret, "agent-events",
                         {"node": cloud.node, "jti": secrets.token_urlsafe(16)}, 60)
    event = {"id": str(uuidlib.uuid4()), "kind": "node", "uuid": cloud.node, "type": "status",
             "timestamp": time.time(), "message": message, "duration": None, "extra": None}
    async with websockets.connect(
            f"wss://{cloud.agents_address}/ws/agent/events/", open_timeout=10,
            additional_headers={"Authorization": f"Bearer {token}"},
            ssl=tls.client_context(tls.agent(cloud.pki_dir, cloud.node))) as connection:
        await connection.send(json.dumps({"events": [event]}))
        return list(json.loads(await asyncio.wait_for(connection.recv(), 10))["ack"])


def test_an_unprivileged_user_is_refused_everywhere_and_root_is_not(cloud: Cloud) -> None:
    argv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
            "/usr/bin/python3", "-c", PROBE, etcd_address(cloud), node_address(cloud),
            cloud.agents_address, str(cloud.pki_dir / "portal.key")]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    found = json.loads(result.stdout)
    print(json.dumps(found, indent=2))  # the evidence, with -s
    assert set(found) == {"etcd over http", "etcd over https", "agent server", "events socket",
                          "the portal's key"}
    for what, outcome in found.items():
        assert outcome.startswith("refused: "), f"{what}: {outcome}"
    assert "PermissionError" in found["the portal's key"]

    # Root, with the cloud's certificates: each of them answers.
    async def as_root() -> None:
        etcd = cloud.new_etcd()
        try:
            assert await etcd.revision() > 0
        finally:
            await etcd.close()
        portal = tls.client_context(tls.portal(cloud.pki_dir))
        # An instance that is not on this node: the agent answered, over TLS.
        assert await agent_get(cloud, consolelog_path(str(uuidlib.uuid4())), portal) == 404
        message = f"root probe {uuidlib.uuid4()}"
        assert len(await send_event(cloud, message)) == 1

    run_async(as_root())


# --- hostile records ----------------------------------------------------------------------


def _instance(cloud: Cloud, uuid: str, **disk: Any) -> dict[str, Any]:
    base = {"device": "vda", "size_gb": 1, "base": "demo", "source": None, "bus": "virtio",
            "type": "disk"}
    spec = InstanceSpec(uuid=uuid, name="planted", namespace="system", cpus=1, memory=128,
                        disks=[Disk(device="vda", size_gb=1)], node=cloud.node).to_dict()
    spec["disks"] = [{**base, **disk}]
    return spec


def _where_unchecked_code_would_write(cloud: Cloud, uuid: str, device: str) -> Path:
    return Path(os.path.normpath(cloud.instance_dir(uuid) / f"{device}.qcow2"))


def _observed(cloud: Cloud, key: str) -> dict[str, Any] | None:
    kv = cloud.etcd_call(lambda etcd: etcd.get(key))
    return None if kv is None else json.loads(kv.value)


def test_hostile_records_are_refused_with_an_error_and_nothing_is_made(cloud: Cloud) -> None:
    uuids = {what: str(uuidlib.uuid4()) for what in
             ("device", "base", "name", "size", "snapshot-of", "network", "snapshot", "fetch")}
    device = "../../../planted-canary"
    records: dict[str, dict[str, Any]] = {
        # A device that would put the disk outside the instance directory.
        cloud.keys.instance(uuids["device"]): _instance(cloud, uuids["device"], device=device),
        # A base whose blob is a file of the host, not one in the blob store.
        cloud.keys.instance(uuids["base"]): _instance(
            cloud, uuids["base"],
            source=DiskSource(blob_uuid="../../../../etc/shadow", url="demo").to_dict()),
        # A name that is no hostname (it becomes the guest's, and a DNS name in dnsmasq).
        cloud.keys.instance(uuids["name"]): {**_instance(cloud, uuids["name"]),
                                             "name": "x\naddress=/#/10.6.6.6"},
        # A disk of a billion gigabytes.
        cloud.keys.instance(uuids["size"]): _instance(cloud, uuids["size"], size_gb=10**9),
        # A snapshot, to be taken by this node, of a "disk" outside any instance.
        cloud.keys.blob(uuids["snapshot"]): Blob(
            uuid=uuids["snapshot"], namespace="system", origin="snapshot", node=cloud.node,
            source_url=f"sf://instance/{uuids['snapshot-of']}/vda",
            instance_uuid=uuids["snapshot-of"], device="../../../../planted-canary-2").to_dict(),
        # A blob for this node to fetch from a file of the host, which only an
        # operator's registered file may be (and then read by every node).
        cloud.keys.blob(uuids["fetch"]): Blob(
            uuid=uuids["fetch"], namespace="system", origin="fetch", node=cloud.node,
            source_url="file:///etc/shadow").to_dict(),
        # A network whose range is this host's loopback.
        cloud.keys.network(uuids["network"]): NetworkSpec(
            uuid=uuids["network"], name="planted", namespace="system",
            netblock="127.0.0.0/8", vxid=4000001).to_dict(),
    }
    canaries = [_where_unchecked_code_would_write(cloud, uuids["device"], device),
                _where_unchecked_code_would_write(cloud, uuids["snapshot-of"],
                                                  "../../../../planted-canary-2")]
    qcow2_before = set(cloud.state_dir.rglob("*.qcow2"))

    async def plant() -> None:
        etcd = cloud.new_etcd()  # the portal's certificate: etcd lets this in
        try:
            for key, record in records.items():
                await etcd.put(key, record)
        finally:
            await etcd.close()

    run_async(plant())
    try:
        expected = {
            "device": "disks[0].device '../../../planted-canary' is not a disk device name",
            "base": "disks[0].source.blob_uuid '../../../../etc/shadow' is not a uuid",
            "name": "name: ",
            "size": "disks[0].size_gb 1000000000 is not a whole number",
        }
        for what, reason in expected.items():
            observed = wait_for(
                lambda what=what: _observed(cloud, cloud.keys.observed_instance(uuids[what])),
                30, f"the agent's verdict on the planted {what} record")
            assert observed["state"] == "error", observed
            assert "the node agent refused its record" in observed["error"], observed
            assert reason in observed["error"], observed
        blob_errors = {
            "snapshot": "device '../../../../planted-canary-2' is not a disk device name",
            "fetch": "source_url 'file:///etc/shadow': only http and https URLs are fetched",
        }
        for what, reason in blob_errors.items():
            blob = wait_for(lambda what=what: _observed(
                cloud, cloud.keys.observed_blob(cloud.node, uuids[what])), 30,
                f"the agent's verdict on the planted {what} blob")
            assert blob["state"] == "error", blob
            assert "the node agent refused its record" in blob["error"], blob
            assert reason in blob["error"], blob
        network = wait_for(lambda: _observed(
            cloud, cloud.keys.observed_network(uuids["network"])), 30,
            "the network node's verdict on the planted network")
        assert network["state"] == "error" and "netblock" in network["error"], network

        # Nothing was made for any of them, in an instance directory or out of it.
        for uuid in uuids.values():
            assert not cloud.instance_dir(uuid).exists()
            assert uuid not in cloud.domains()
        for canary in canaries:
            assert not canary.exists(), canary
        assert set(cloud.state_dir.rglob("*.qcow2")) == qcow2_before
        # Nor was anything fetched or copied for the planted blobs.
        assert not [path for path in cloud.state_dir.rglob("*")
                    if uuids["snapshot"] in path.name or uuids["fetch"] in path.name]
        assert not any(name.startswith(cloud.net_names.tag) and "4000001" in name
                       for name in cloud.network_objects()["links"])
        # And the agent carries on: it still renews its node's lease.
        assert cloud.node_alive()
        log = cloud.log_text("agent")
        assert "record refused" in log
    finally:
        async def remove() -> None:
            etcd = cloud.new_etcd()
            try:
                for key in records:
                    await etcd.delete(key)
            finally:
                await etcd.close()

        run_async(remove())
    # A refused record that goes away takes its error with it.
    wait_for(lambda: _observed(cloud, cloud.keys.observed_instance(uuids["device"])) is None,
             30, "the planted instance's error to go with its record")
    wait_for(lambda: _observed(cloud, cloud.keys.observed_blob(cloud.node, uuids["fetch"]))
             is None, 30, "the planted blob's error to go with its record")


# --- renewal ---------------------------------------------------------------------------------


def _served_serial(address: str, context: ssl.SSLContext) -> int:
    host, _, port = address.rpartition(":")
    with context.wrap_socket(socket.create_connection((host, int(port)), 5),
                             server_hostname=host) as sock:
        cert = sock.getpeercert()
        assert cert is not None
        return int(cert["serialNumber"], 16)


def test_renewing_every_certificate_while_the_cloud_works_fails_no_request(cloud: Cloud) -> None:
    created = cloud.api().post("/instances", {"name": "renewal", "cpus": 1, "memory": 128,
                                              "disk": [{"size": 1, "base": "demo"}]})
    assert created.status_code == 200, created.text
    uuid = created.json()["uuid"]
    portal_context = tls.client_context(tls.portal(cloud.pki_dir))
    agent_context = tls.client_context(tls.agent(cloud.pki_dir, cloud.node))
    servers = {"etcd": (etcd_address(cloud), portal_context),
               "agent server": (node_address(cloud), portal_context),
               "events listener": (cloud.agents_address, agent_context)}
    before = {name: _served_serial(*where) for name, where in servers.items()}

    failures: list[str] = []
    counts = {"api": 0, "console log": 0, "events": 0}
    stop = threading.Event()

    def work() -> None:
        api = cloud.api()
        while not stop.is_set():
            # portal -> etcd
            response = api.get("/instances")
            if response.status_code != 200:
                failures.append(f"GET /instances: {response.status_code} {response.text[:200]}")
            counts["api"] += 1
            # portal -> the agent's server
            response = api.get(f"/instances/{uuid}/consoledata", {"length": 100})
            if response.status_code != 200:
                failures.append(f"consoledata: {response.status_code} {response.text[:200]}")
            counts["console log"] += 1
            # an agent -> the portal's events listener, on a new connection
            try:
                if len(run_async(send_event(cloud, f"renewal probe {counts['events']}"))) != 1:
                    failures.append("an event was not acknowledged")
            except Exception as exc:  # noqa: BLE001 - every failure is the finding
                failures.append(f"events: {type(exc).__name__}: {exc}")
            counts["events"] += 1

    worker = threading.Thread(target=work)
    worker.start()
    try:
        time.sleep(3)
        renewed = []
        for _ in range(2):
            renewed = CertificateAuthority(cloud.pki_dir).renew(within_days=0, everything=True)
            time.sleep(4)
    finally:
        stop.set()
        worker.join(timeout=60)
    try:
        assert not failures, failures[:5]
        assert min(counts.values()) >= 5, counts
        print(f"renewed twice while serving {counts}: no failure")  # the evidence, with -s
        names = {issued.path.name for issued in renewed}
        assert {"portal.crt", f"agent-{cloud.node}.crt"} <= names
        assert any(name.startswith("etcd-") for name in names)
        # The servers present the renewed certificates now, without a restart.
        after = {name: _served_serial(*where) for name, where in servers.items()}
        assert all(after[name] != before[name] for name in servers), (before, after)
        # And the agent's own connections (etcd, its lease) carried on.
        assert cloud.node_alive()
    finally:
        cloud.api().delete(f"/instances/{uuid}")
        wait_for(lambda: cloud.api().get(f"/instances/{uuid}").json()["state"] == "deleted",
                 60, "the renewal test's instance to go")
