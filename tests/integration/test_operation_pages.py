"""The pages for instance operations render for their owner, answer 404 to
someone who may not see the object, and their actions go through the same
checks as the API."""

from __future__ import annotations

import re

import pytest
import requests

from tests.support.cloud import Cloud, wait_for

pytestmark = pytest.mark.integration


def logged_in(cloud: Cloud) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{cloud.url}/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    response = session.post(f"{cloud.url}/login/", data={
        "username": "admin", "password": cloud.admin_password, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{cloud.url}/login/"})
    assert response.status_code == 200 and "Log out" in response.text, response.text[:500]
    return session


def csrf(session: requests.Session) -> dict[str, str]:
    return {"X-CSRFToken": session.cookies["csrftoken"], "Referer": "http://x/",
            "HX-Request": "true"}


def test_pages_render_and_actions_answer_like_the_api(cloud: Cloud) -> None:
    session = logged_in(cloud)
    api = cloud.api()
    made = api.post("/instances", {"name": "pagevm", "cpus": 1, "memory": 128,
                                   "disk": [{"size": 1, "base": "demo"}],
                                   "metadata": {"team": "blue"}})
    uuid = made.json()["uuid"]
    cloud.wait_console(uuid, "SFCLOUD-READY")
    wait_for(lambda: api.get(f"/instances/{uuid}").json()["power_state"] == "on", 30, "on")

    def page(path: str) -> str:
        response = session.get(f"{cloud.url}{path}")
        if response.status_code != 200:
            print(cloud.log_text("portal")[-6000:])
        assert response.status_code == 200, (path, response.status_code)
        return response.text

    detail = page(f"/instances/{uuid}/")
    for part in ('id="section-power"', 'data-power="on"', 'id="section-metadata"', "team",
                 'id="section-snapshots"', 'id="event-rows"', "created by key system/admin",
                 f'ws-connect="/ws/instances/{uuid}/"', ">Pause<", ">Power off…<"):
        assert part in detail, part
    listing = page("/instances/")
    assert f"/instances/{uuid}/power/pause/" in listing
    assert "Keypairs" in page("/keypairs/")
    assert "Images" in page("/images/")
    assert "demo" in page("/images/")
    assert "node agent" in page(f"/nodes/{cloud.node}/")

    headers = csrf(session)
    response = session.post(f"{cloud.url}/instances/{uuid}/power/unpause/", headers=headers)
    assert response.status_code == 200
    assert "it is not paused" in response.headers["HX-Trigger"]
    response = session.post(f"{cloud.url}/instances/{uuid}/power/pause/", headers=headers)
    assert "Pause: sent to pagevm" in response.headers["HX-Trigger"]
    wait_for(lambda: api.get(f"/instances/{uuid}").json()["power_state"] == "paused", 30,
             "paused")
    response = session.post(f"{cloud.url}/instances/{uuid}/metadata/", headers=headers,
                            data={"key": "tags", "value": '["a", "b"]'})
    assert "Set tags" in response.headers["HX-Trigger"]
    assert api.get(f"/instances/{uuid}/metadata").json() == {"team": "blue", "tags": ["a", "b"]}
    response = session.post(f"{cloud.url}/instances/{uuid}/metadata/team/delete/",
                            headers=headers)
    assert api.get(f"/instances/{uuid}/metadata").json() == {"tags": ["a", "b"]}
    # A disk the instance has not is refused by the form, beside its field (the form again).
    response = session.post(f"{cloud.url}/instances/{uuid}/snapshot/", headers=headers,
                            data={"device": "vdq"})
    assert response.status_code == 400 and 'id="id_device_error"' in response.text
    assert "vdq is not one of the available choices" in response.text

    api.delete(f"/instances/{uuid}")
    wait_for(lambda: api.get(f"/instances/{uuid}").json()["state"] == "deleted", 60, "deleted")
