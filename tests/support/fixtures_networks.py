"""pytest fixtures for network tests (a plugin module: list it in
``pytest_plugins``): a cloud with an uplink into a test-made outside world,
and helpers to create networks and guests on it.

- ``outside_world``: the namespaces beyond the uplink (tests.support.networld).
- ``netcloud``: a whole cloud whose single node is also the network node,
  with NAT and floating addresses through that uplink.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cloud import Cloud, wait_for
from tests.support.networld import FLOATING_NETWORK, FLOATING_ROUTER, UPSTREAM, OutsideWorld


@pytest.fixture(scope="session")
def outside_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutsideWorld]:
    world = OutsideWorld().start(tmp_path_factory.mktemp("outside"))
    try:
        yield world
    finally:
        world.close()


@pytest.fixture(scope="session")
def netcloud(etcd_server, guest_image_dir: Path, libvirt_daemon: None,  # type: ignore[no-untyped-def]
             outside_world: OutsideWorld) -> Iterator[Cloud]:
    """A single-node cloud whose node is also the network node, with NAT and
    floating addresses through the outside world's uplink."""
    running = Cloud(
        etcd_server, demo_image=guest_image_dir / "disk.qcow2",
        SFCLOUD_UPLINK=outside_world.uplink,
        SFCLOUD_FLOATING_NETWORK=FLOATING_NETWORK,
        SFCLOUD_FLOATING_ROUTER=FLOATING_ROUTER,
        # The outside world's far host also answers DNS (when a test starts it).
        SFCLOUD_DNS_SERVERS=UPSTREAM,
    )
    try:
        yield running.start()
    finally:
        running.stop()


def create_network(cloud: Cloud, name: str, netblock: str, **extra: object) -> dict:
    response = cloud.api().post("/networks", {"name": name, "netblock": netblock, **extra})
    assert response.status_code == 200, response.text
    uuid = response.json()["uuid"]
    return wait_for(lambda: (n := cloud.api().get(f"/networks/{uuid}").json())["state"]
                    == "created" and n, 60, f"network {name} to be created")


def script(text: str) -> str:
    """A user_data shell script, base64 as the API carries it."""
    return base64.b64encode(("#!/bin/sh\n" + text).encode()).decode()


def create_instance(cloud: Cloud, name: str, networks: list[dict], *, user_data: str | None = None,
                    **extra: object) -> dict:
    body = {"name": name, "cpus": 1, "memory": 128, "disk": [{"size": 1, "base": "demo"}],
            "network": networks, **extra}
    if user_data is not None:
        body["user_data"] = script(user_data)
    response = cloud.api().post("/instances", body)
    assert response.status_code == 200, response.text
    return response.json()


def delete_instances(cloud: Cloud, *uuids: str) -> None:
    for uuid in uuids:
        cloud.api().delete(f"/instances/{uuid}")
    for uuid in uuids:
        wait_for(lambda u=uuid: cloud.api().get(f"/instances/{u}").json()["state"] == "deleted",
                 60, f"instance {uuid} deleted")


def delete_networks(cloud: Cloud, *uuids: str) -> None:
    for uuid in uuids:
        response = cloud.api().delete(f"/networks/{uuid}")
        assert response.status_code == 200, response.text
    for uuid in uuids:
        wait_for(lambda u=uuid: cloud.api().get(f"/networks/{u}").json()["state"] == "deleted",
                 60, f"network {uuid} deleted")


def namespace_key(cloud: Cloud, namespace: str) -> str:
    """A namespace of its own and a key for it (an admin of it), made through the API."""
    secret = f"key-{namespace}-0123456789"
    api = cloud.api()
    if api.get(f"/auth/namespaces/{namespace}").status_code == 404:
        assert api.post("/auth/namespaces", {"namespace": namespace}).status_code == 200
        response = api.post(f"/auth/namespaces/{namespace}/keys",
                            {"key_name": "k", "key": secret})
        assert response.status_code == 200, response.text
    return secret


PINGABLE = "pingable"


def allow_ping(cloud: Cloud, interface: str, api: object = None) -> None:
    """Let pings in to an interface from anywhere (the default group lets
    in only its own members): its groups become default and ``pingable``."""
    client = api or cloud.api()
    if client.get(f"/security-groups/{PINGABLE}").status_code == 404:  # type: ignore[attr-defined]
        response = client.post("/security-groups", {  # type: ignore[attr-defined]
            "name": PINGABLE, "rules": [{"direction": "ingress", "protocol": "icmp"}]})
        assert response.status_code == 200, response.text
    response = client.request("PUT", f"/interfaces/{interface}/security-groups",  # type: ignore[attr-defined]
                              {"security_groups": ["default", PINGABLE]})
    assert response.status_code == 200, response.text
