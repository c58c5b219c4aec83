"""Bad input to the operations of a real running guest leaves it running.

What each refusal says, and that nothing half-made is left in etcd, is
tried in process: tests/fast/test_api_instances.py."""

from __future__ import annotations

import pytest

from tests.support.cloud import Cloud, wait_for

pytestmark = pytest.mark.integration


def test_bad_metadata_and_actions_leave_the_guest_running(cloud: Cloud) -> None:
    api = cloud.api()
    uuid = api.post("/instances", {"name": "keepsgoing", "cpus": 1, "memory": 128,
                                   "disk": [{"size": 1, "base": "demo"}]}).json()["uuid"]
    cloud.wait_console(uuid, "SFCLOUD-READY")
    for method, path, body, status in (
        ("PUT", f"/instances/{uuid}/metadata/-dash", {"value": 1}, 400),
        ("PUT", f"/instances/{uuid}/metadata/big", {"value": "x" * 20000}, 400),
        ("DELETE", f"/instances/{uuid}/metadata/nothere", None, 404),
        ("POST", f"/instances/{uuid}/snapshot", {"device": "sdz"}, 400),
        ("POST", f"/instances/{uuid}/unpause", None, 409),
    ):
        response = api.request(method, path, body)
        assert response.status_code == status, (method, path, response.text)
    # None of that touched the guest.
    assert api.get(f"/instances/{uuid}").json()["power_state"] == "on"
    assert cloud.domains()[uuid] == 1
    api.delete(f"/instances/{uuid}")
    wait_for(lambda: api.get(f"/instances/{uuid}").json()["state"] == "deleted", 60, "deleted")
