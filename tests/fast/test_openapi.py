"""The API's description (portal.api.openapi): generated from the route
table and the shapes, served as JSON and as a page, complete (every route
and method described), and following new routes by itself."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.urls import path

from portal.api import openapi, urls
from portal.api.framework import endpoint
from tests.support.inprocess import InProcessPortal


def test_every_route_and_method_is_described() -> None:
    """A route (or method) added to portal.api.urls without its line in
    portal.api.operations fails here, as one missing from the authorization
    matrix fails there; so does a line for a route that is gone."""
    missing = openapi.undescribed()
    assert missing == [], "describe these in portal/api/operations.py:\n" + "\n".join(missing)


def test_a_new_route_appears_in_the_description_by_itself(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    @endpoint("GET", "POST")
    async def novel(request: Any, body: dict, actor: Any, thing: str) -> None:
        return None

    monkeypatch.setattr(urls, "urlpatterns", [*urls.urlpatterns,
                                              path("/novelties/<str:thing>", novel)])
    openapi.document.cache_clear()
    try:
        document = openapi.document()
        item = document["paths"]["/novelties/{thing}"]
        assert set(item) == {"get", "post"}
        assert item["get"]["summary"] == openapi.UNDESCRIBED
        assert item["get"]["parameters"][0]["name"] == "thing"
        assert openapi.undescribed() == ["GET /novelties/<str:thing>",
                                         "POST /novelties/<str:thing>"]
    finally:
        monkeypatch.undo()
        openapi.document.cache_clear()


def test_a_plain_view_is_named_and_the_description_still_served(
        monkeypatch: pytest.MonkeyPatch, portal: InProcessPortal) -> None:
    """A view that declares no methods (not an @endpoint, no api_endpoint)
    fails the completeness test, never the served description (it was a
    500 when main's health routes arrived)."""
    async def plain(request: Any) -> None:
        return None

    monkeypatch.setattr(urls, "urlpatterns", [path("/plainly", plain), *urls.urlpatterns])
    openapi.document.cache_clear()
    try:
        assert openapi.undescribed()[0].startswith("? /plainly ")
        served = portal.api().get("/openapi.json")
        assert served.status_code == 200 and "/plainly" not in served.json()["paths"]
    finally:
        monkeypatch.undo()
        openapi.document.cache_clear()


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [v for k, v in value.items() if k == "$ref"] + \
            [r for v in value.values() for r in _refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    return []


def test_the_document_is_whole() -> None:
    document = openapi.document()
    assert document["openapi"] == "3.1.0"
    names = set(document["components"]["schemas"])
    for ref in _refs(document):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in names, ref
    operations = [op for item in document["paths"].values() for op in item.values()]
    assert len({op["operationId"] for op in operations}) == len(operations)
    for item_path, item in document["paths"].items():
        for name in re.findall(r"{(\w+)}", item_path):
            for op in item.values():
                assert name in [p["name"] for p in op.get("parameters", [])], (item_path, op)
    # The shapes are described exactly; what a request may send is open.
    instance = document["components"]["schemas"]["InstanceShape"]
    assert instance["additionalProperties"] is False and "uuid" in instance["required"]
    assert "requested_placement" not in instance["required"]
    body = document["components"]["schemas"]["InstanceBody"]
    assert "additionalProperties" not in body and "required" not in body
    assert body["properties"]["configdrive"] == {"enum": ["openstack-disk", "none"]}
    assert set(document["components"]["schemas"]["BlobShape"]["properties"]) >= {
        "virtual size", "file format"}


def test_served_as_json_and_as_a_page(portal: InProcessPortal) -> None:
    anonymous = portal.browser()
    served = anonymous.get("/api/openapi.json")
    assert served.status_code == 200
    assert json.loads(served.content) == json.loads(json.dumps(openapi.document()))
    page = anonymous.get("/api/docs")
    assert page.status_code == 200
    assert "<script" not in page.text  # rendered here: nothing to run, nothing fetched
    for item_path, item in openapi.document()["paths"].items():
        for method in item:
            shown = "/api" + ("" if item_path == "/" else item_path)
            assert f"{method.upper()} {shown}" in page.text, (method, shown)
    assert "InstanceShape" in page.text


def test_a_method_not_served_says_which_are(portal: InProcessPortal) -> None:
    """405 names the methods the description lists, in Allow (RFC 9110)."""
    for item_path, methods in (("/nodes", "GET"), ("/instances/x", "GET, DELETE")):
        answer = portal.api().request("PUT", item_path)
        assert answer.status_code == 405, answer.text
        assert answer.headers["Allow"] == methods
        described = openapi.document()["paths"][item_path.replace("/x", "/{ref}")]
        assert sorted(described) == sorted(m.strip().lower() for m in methods.split(","))
