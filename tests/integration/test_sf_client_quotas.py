"""Quotas through Shaken Fist's own client: a namespace's instance and vCPU
quotas refuse a create with the quota's name, its limit and the use, the
guest it already has keeps running, and a delete gives the quota back."""

from __future__ import annotations

import json
import secrets

import pytest

from tests.support.cloud import Cloud

pytestmark = pytest.mark.integration


def test_sf_client_hits_the_instance_quota(cloud: Cloud) -> None:
    ns = f"quota-{secrets.token_hex(3)}"
    key = secrets.token_urlsafe(16)
    cloud.sf("namespace", "create", ns)
    cloud.sf("namespace", "add-key", ns, "ci", key)
    system = cloud.api()
    limits = system.request("PUT", f"/auth/namespaces/{ns}/quota", {"instances": 1, "vcpus": 2})
    assert limits.status_code == 200, limits.text

    def sf(*args: str, check: bool = True):  # type: ignore[no-untyped-def]
        return cloud.sf(*args, namespace=ns, key=key, check=check)

    try:
        too_big = sf("instance", "create", "wide", "4", "128", "-d", "1@demo", check=False)
        assert too_big.returncode != 0
        assert "quota exceeded: vcpus limit 2, in use 0, asked 4" in too_big.stdout + too_big.stderr

        first = json.loads(sf("--json", "instance", "create", "first", "1", "128",
                              "-d", "1@demo").stdout)
        assert first["state"] == "created", first
        second = sf("instance", "create", "second", "1", "128", "-d", "1@demo", check=False)
        assert second.returncode != 0
        assert "quota exceeded: instances limit 1, in use 1, asked 1" in \
            second.stdout + second.stderr
        # Refused means not made, and the first one untouched.
        listed = json.loads(sf("--json", "instance", "list").stdout)["instances"]
        assert [(i["name"], i["state"]) for i in listed] == [("first", "created")]
        assert first["uuid"] in cloud.domains()

        quota = system.get(f"/auth/namespaces/{ns}/quota").json()["quota"]
        assert (quota["instances"]["in_use"], quota["vcpus"]["in_use"]) == (1, 1)

        sf("instance", "delete", first["uuid"])
        again = json.loads(sf("--json", "instance", "create", "second", "1", "128",
                              "-d", "1@demo").stdout)
        assert again["state"] == "created", again
        sf("instance", "delete", again["uuid"])
    finally:
        sf("instance", "delete-all", "--confirm", "--namespace", ns, check=False)
