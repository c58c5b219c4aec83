"""Shaken Fist's own client, unchanged, driving networks and interfaces."""

from __future__ import annotations

import json

import pytest

from tests.support.cloud import Cloud, wait_for
from tests.support.fixtures_networks import allow_ping
from tests.support.networld import OutsideWorld, ping

pytestmark = pytest.mark.integration


def sf_json(cloud: Cloud, *args: str) -> object:
    return json.loads(cloud.sf("--json", *args).stdout)


def test_network_create_list_show_delete(netcloud: Cloud) -> None:
    # The client waits while the state is initial or creating.
    created = sf_json(netcloud, "network", "create", "sfnet", "10.78.0.0/24")
    assert created["state"] == "created" and created["netblock"] == "10.78.0.0/24"
    uuid = created["uuid"]
    assert created["metadata"] == {}

    listed = sf_json(netcloud, "network", "list")
    assert [n["name"] for n in listed if n["uuid"] == uuid] == ["sfnet"]
    table = netcloud.sf("network", "list").stdout
    assert "sfnet" in table and "10.78.0.0/24" in table

    shown = netcloud.sf("network", "show", "sfnet").stdout
    assert uuid in shown and "floating gateway" in shown and "created" in shown
    netcloud.sf("network", "set-metadata", "sfnet", "team", "blue")
    assert sf_json(netcloud, "network", "show", uuid)["metadata"] == {"team": "blue"}
    addresses = netcloud.sf("network", "addresses", "sfnet").stdout
    assert "10.78.0.1" in addresses and "gateway" in addresses
    assert "created by key system/admin" in netcloud.sf("network", "events", "sfnet").stdout

    # --no-nat is honoured (Shaken Fist's own server forgot to).
    plain = sf_json(netcloud, "network", "create", "sfplain", "10.78.1.0/24", "--no-nat")
    assert plain["provide_nat"] is False and plain["floating_gateway"] is None

    netcloud.sf("network", "delete", "sfnet")
    netcloud.sf("network", "delete", plain["uuid"])
    for gone in (uuid, plain["uuid"]):
        wait_for(lambda g=gone: sf_json(netcloud, "network", "show", g)["state"] == "deleted",
                 60, "the network deleted")
    assert "sfnet" not in netcloud.sf("network", "list").stdout


def test_instance_on_a_network_and_interface_float_defloat(
        netcloud: Cloud, outside_world: OutsideWorld) -> None:
    net = sf_json(netcloud, "network", "create", "sfvmnet", "10.79.0.0/24")
    # -f: a NIC on the network, floated at once; -n with @address: a second NIC.
    shown = sf_json(netcloud, "instance", "create", "sfvm", "1", "128", "-d", "1@demo",
                    "-f", "sfvmnet", "-n", "sfvmnet@10.79.0.50")
    uuid = shown["uuid"]
    try:
        nics = sorted(shown["network_interfaces"], key=lambda n: n["order"])
        assert [n["network_uuid"] for n in nics] == [net["uuid"], net["uuid"]]
        assert nics[0]["floating"] and nics[1]["ipv4"] == "10.79.0.50"
        assert nics[1]["floating"] is None
        interface = nics[1]["uuid"]

        listed = netcloud.sf("network", "instances", "sfvmnet").stdout
        assert uuid in listed and "10.79.0.50" in listed

        netcloud.sf("interface", "float", interface)
        floating = sf_json(netcloud, "interface", "show", interface)["network_interfaces"][0][
            "floating"]
        assert floating
        netcloud.wait_console(uuid, "SFCLOUD-READY", 150)
        allow_ping(netcloud, interface)
        # Both NICs are on one network: the guest answers what eth1 got
        # through eth0 (its default route), from eth1's address, which
        # eth0's anti-spoofing must then allow.
        response = netcloud.api().request("PUT", f"/interfaces/{nics[0]['uuid']}/"
                                          "allowed-addresses",
                                          {"allowed_addresses": ["10.79.0.50"]})
        assert response.status_code == 200, response.text
        wait_for(lambda: ping(outside_world.www, floating), 60, "the floating address")
        failed = netcloud.sf("interface", "float", interface, check=False)
        assert failed.returncode != 0 and "already has the floating address" in \
            failed.stdout + failed.stderr

        netcloud.sf("interface", "defloat", interface)
        assert sf_json(netcloud, "interface", "show", interface)[
            "network_interfaces"][0]["floating"] is None
        wait_for(lambda: not ping(outside_world.www, floating, count=1, wait=1), 30,
                 "the floating address gone")

        # A network in use can't be deleted; the client shows why.
        refused = netcloud.sf("network", "delete", "sfvmnet", check=False)
        assert "in use by instance sfvm" in refused.stdout + refused.stderr
    finally:
        netcloud.sf("instance", "delete", uuid)
    netcloud.sf("network", "delete", net["uuid"])
    wait_for(lambda: sf_json(netcloud, "network", "show", net["uuid"])["state"] == "deleted",
             60, "the network deleted")


def test_capabilities_name_only_what_is_implemented(netcloud: Cloud) -> None:
    import requests

    page = requests.get(netcloud.api_url, timeout=10).text
    assert "provide-dns" in page and "list-addresses" in page
    # The client would expect an operation handle back from DELETE.
    assert "network-delete-async" not in page
    assert "interface-metadata" not in page
