"""Quotas in the pages: the namespace's admin page shows each quota's use
against its limit and follows changes live; only system admins get the form
that sets them (a refusal beside its field, what was typed kept); the
dashboard shows the namespace's use against its quotas, live; a create over
quota is refused in the form beside the field that asked for too much.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable

from tests.fast.conftest import TEAM
from tests.support.fakeagent import FakeAgent
from tests.support.httpserve import HTTPTestServer
from tests.support.inprocess import InProcessPortal, Person, Socket


def _until(ws: Socket, wanted: Callable[[str], bool], timeout: float = 20) -> str:
    """Read messages until one satisfies ``wanted``; fail with the last one."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            last = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            break
        if wanted(last):
            return last
    raise AssertionError(f"no such message within {timeout:.0f} s; the last: {last[:500]!r}")


def _row(html: str, kind: str) -> tuple[str, str]:
    """(data-used, data-limit) of a kind's row."""
    found = re.search(rf'<tr data-resource="{kind}" data-used="(\d+)" data-limit="(\d*)"', html)
    assert found, html[:2000]
    return found.group(1), found.group(2)


def _namespace(portal: InProcessPortal) -> str:
    name = f"p-{secrets.token_hex(3)}"
    assert portal.api().post("/auth/namespaces", {"namespace": name}).status_code == 200
    return name


def test_a_system_admin_sets_quotas_on_the_page(portal: InProcessPortal, admin: Person) -> None:
    namespace = _namespace(portal)
    page = admin.browser.get(f"/manage/namespaces/{namespace}/")
    assert page.status_code == 200
    assert _row(page.text, "vcpus") == ("0", "40")
    assert 'id="quota-form"' in page.text and 'value="100G"' in page.text  # image_bytes
    fields = {"instances": "3", "vcpus": "6", "memory_mib": "", "disk_gb": "50",
              "floating_addresses": "2", "images": "5", "image_bytes": "20G", "snapshots": "",
              "snapshot_bytes": "1T", "networks": "2", "security_groups": "4"}
    done = admin.browser.post(f"/manage/namespaces/{namespace}/quota/", fields)
    assert done.status_code == 302, done.text
    shown = portal.api().get(f"/auth/namespaces/{namespace}/quota").json()["quota"]
    assert {k: v["limit"] for k, v in shown.items()} == {
        "instances": 3, "vcpus": 6, "memory_mib": None, "disk_gb": 50,
        "floating_addresses": 2, "images": 5, "image_bytes": 20 << 30, "snapshots": None,
        "snapshot_bytes": 1 << 40, "networks": 2, "security_groups": 4}
    page = admin.browser.get(f"/manage/namespaces/{namespace}/")
    assert _row(page.text, "memory_mib") == ("0", "")
    assert 'value="20G"' in page.text

    # Bad input: beside its field, as typed, and nothing changed.
    bad = admin.browser.post(f"/manage/namespaces/{namespace}/quota/",
                             {**fields, "vcpus": "lots", "image_bytes": "5 parsecs"})
    assert bad.status_code == 400
    assert re.search(r'id="id_vcpus_error"[^>]*><li>&#x27;lots&#x27; is not a limit: give a '
                     r'whole number', bad.text), bad.text
    assert re.search(r'id="id_image_bytes_error"[^>]*><li>&#x27;5 parsecs&#x27; is not a '
                     r'limit', bad.text)
    assert 'value="lots"' in bad.text and 'value="5 parsecs"' in bad.text
    assert portal.api().get(f"/auth/namespaces/{namespace}/quota").json()["quota"]["vcpus"][
        "limit"] == 6


def test_a_namespace_admin_sees_the_quotas_but_may_not_set_them(portal: InProcessPortal,
                                                                bob: Person) -> None:
    portal.api().put("/auth/namespaces/other/quota", {"networks": 4})
    page = bob.browser.get("/manage/namespaces/other/")
    assert page.status_code == 200
    assert _row(page.text, "networks") == ("0", "4")
    assert 'id="quota-form"' not in page.text
    refused = bob.browser.post("/manage/namespaces/other/quota/", {"networks": ""})
    assert refused.status_code == 403
    assert portal.api().get("/auth/namespaces/other/quota").json()["quota"]["networks"][
        "limit"] == 4


def test_the_namespace_page_follows_use_and_limits_live(portal: InProcessPortal, admin: Person,
                                                        alice: Person, agent: FakeAgent) -> None:
    portal.api().put(f"/auth/namespaces/{TEAM}/quota", {"vcpus": 8, "images": 2})
    api = alice.api(TEAM)
    with admin.browser.socket(f"/ws/quotas/{TEAM}/") as ws:
        first = ws.recv(timeout=10)
        assert first.startswith('<div id="quota-lines" hx-swap-oob="true">')
        assert _row(first, "vcpus") == ("0", "8")
        made = api.post("/instances", {"name": "live", "cpus": 3, "memory": 128,
                                       "disk": [{"size": 1}]})
        assert made.status_code == 200, made.text
        _until(ws, lambda m: 'data-resource="vcpus" data-used="3" data-limit="8"' in m)
        # An image, then a limit changed: each shows without a reload.
        image = api.post("/artifacts", {"url": "http://127.0.0.1:9/live.qcow2"})
        assert image.status_code == 200, image.text
        _until(ws, lambda m: 'data-resource="images" data-used="1" data-limit="2"' in m)
        # Its bytes count once its node holds them.
        kv = portal.etcd_call(lambda etcd: etcd.get(portal.keys.artifact(image.json()["uuid"])))
        agent.report_blob(next(iter(kv.json()["versions"].values())), b"i" * 4096)
        _until(ws, lambda m: 'data-resource="image_bytes" data-used="4096"' in m)
        portal.api().put(f"/auth/namespaces/{TEAM}/quota", {"vcpus": 16})
        _until(ws, lambda m: 'data-resource="vcpus" data-used="3" data-limit="16"' in m)
        # Deleted: given back.
        assert api.delete(f"/instances/{made.json()['uuid']}").status_code == 200
        _until(ws, lambda m: 'data-resource="vcpus" data-used="0" data-limit="16"' in m)


def test_the_dashboard_shows_use_against_quotas_live(portal: InProcessPortal, alice: Person,
                                                     agent: FakeAgent) -> None:
    portal.api().put(f"/auth/namespaces/{TEAM}/quota", {"networks": 3})
    page = alice.browser.get("/")
    assert _row(page.text, "networks") == ("0", "3")
    with alice.browser.socket("/ws/dashboard/") as ws:
        ws.recv(timeout=10)
        made = alice.api(TEAM).post("/networks", {"name": "n", "netblock": "10.80.0.0/24",
                                                  "provide_nat": False})
        assert made.status_code == 200, made.text
        _until(ws, lambda m: 'data-resource="networks" data-used="1" data-limit="3"' in m)


def test_a_create_over_quota_is_refused_beside_its_field(portal: InProcessPortal,
                                                         alice: Person, agent: FakeAgent,
                                                         demo_image: str) -> None:
    portal.api().put(f"/auth/namespaces/{TEAM}/quota", {"vcpus": 2, "networks": 0})
    form = {"name": "big", "cpus": "4", "memory": "256", "disk_size": "1", "image": "demo",
            "disk_bus": "virtio", "firmware": "bios"}
    page = alice.browser.post("/instances/new/", form)
    assert page.status_code == 400, page.text[:500]
    assert re.search(r'id="id_cpus_error"[^>]*><li>Quota exceeded: vcpus limit 2, in use 0, '
                     r'asked 4', page.text), page.text
    assert 'value="big"' in page.text
    page = alice.browser.post("/networks/new/", {"name": "n", "netblock": "10.81.0.0/24"})
    assert page.status_code == 400
    assert re.search(r'id="id_name_error"[^>]*><li>Quota exceeded: networks limit 0, in use 0, '
                     r'asked 1', page.text), page.text


def test_snapshots_and_floating_over_quota_are_refused_in_the_instance_page(
        portal: InProcessPortal, alice: Person, agent: FakeAgent) -> None:
    portal.api().put(f"/auth/namespaces/{TEAM}/quota", {"snapshots": 0,
                                                        "floating_addresses": 0})
    api = alice.api(TEAM)
    network = api.post("/networks", {"name": "n", "netblock": "10.82.0.0/24",
                                     "provide_nat": False}).json()["uuid"]
    made = api.post("/instances", {"name": "vm", "cpus": 1, "memory": 128,
                                   "disk": [{"size": 1}], "network": [{"network_uuid": network}]})
    assert made.status_code == 200, made.text
    uuid = made.json()["uuid"]
    agent.report_instance(uuid)
    page = alice.browser.post(f"/instances/{uuid}/snapshot/", {"device": ""}, htmx=True)
    assert page.status_code == 400
    assert re.search(r'id="id_device_error"[^>]*><li>Quota exceeded: snapshots limit 0, '
                     r'in use 0, asked 1', page.text), page.text
    interface = made.json()["interfaces"][0]["uuid"]
    page = alice.browser.post(f"/networks/interface/{interface}/float/", htmx=True)
    assert "quota exceeded: floating_addresses limit 0, in use 0, asked 1" in page.text
    assert api.get(f"/interfaces/{interface}").json()["floating"] is None


def test_an_image_over_quota_is_refused_in_the_images_form(portal: InProcessPortal,
                                                           alice: Person) -> None:
    portal.api().put(f"/auth/namespaces/{TEAM}/quota", {"images": 0})
    with HTTPTestServer() as served:
        # A disk's first bytes, so the form's probe takes it for an image.
        served.serve_bytes("/small.qcow2", b"QFI\xfb\x00\x00\x00\x03" + b"\x00" * 4088,
                           "application/x-qcow2")
        url = served.url("/small.qcow2")
        page = alice.browser.post("/images/cache/", {"url": url, "name": ""}, htmx=True)
    assert page.status_code == 400
    assert re.search(r'id="id_url_error"[^>]*><li>Quota exceeded: images limit 0, in use 0, '
                     r'asked 1', page.text), page.text
    assert f'value="{url}"' in page.text
    assert alice.api(TEAM).get("/artifacts").json() == []
