"""Shaken Fist's own command-line client, unchanged, against sfcloud."""

from __future__ import annotations

import json

import pytest

from tests.support.cloud import Cloud

pytestmark = pytest.mark.integration


def test_instance_create_list_show_delete_and_node_list(cloud: Cloud) -> None:
    created = cloud.sf("--json", "instance", "create", "sfvm", "1", "256", "-d", "1@demo")
    shown = json.loads(created.stdout)
    uuid = shown["uuid"]
    # The client waits while the state is initial or creating.
    assert shown["state"] == "created", shown
    assert shown["node"] == cloud.node

    listed = json.loads(cloud.sf("--json", "instance", "list").stdout)["instances"]
    assert uuid in [item["uuid"] for item in listed]

    by_name = cloud.sf("instance", "show", "sfvm").stdout
    assert uuid in by_name and "created" in by_name

    nodes = cloud.sf("node", "list").stdout
    assert cloud.node in nodes

    # delete waits, by UUID, until the instance reads "deleted".
    cloud.sf("instance", "delete", uuid)
    assert json.loads(cloud.sf("--json", "instance", "show", uuid).stdout)["state"] == "deleted"
    assert uuid not in cloud.domains()


def test_bad_input_is_reported_by_the_client(cloud: Cloud) -> None:
    result = cloud.sf("instance", "create", "bad_name", "1", "256", "-d", "1@demo", check=False)
    assert result.returncode != 0
    assert "not a valid hostname" in result.stdout + result.stderr

    result = cloud.sf("instance", "create", "huge", "1", "900000", "-d", "1@demo", check=False)
    assert result.returncode != 0
    assert "Insufficient Resources" in result.stdout + result.stderr
    assert "MiB memory free" in result.stdout + result.stderr
