"""Under /api every answer is JSON in Shaken Fist's error shape, even for a
failure nobody expected; pages keep Django's own handling."""

from __future__ import annotations

import json

from django.test import RequestFactory

from cloudstate.etcd import EtcdUnavailable
from portal.cloud.middleware import ApiJsonErrors


def test_an_unexpected_failure_under_api_is_a_json_500_without_internals() -> None:
    middleware = ApiJsonErrors(lambda request: None)
    response = middleware.process_exception(RequestFactory().get("/api/instances"),
                                            KeyError("secret-internal-detail"))
    assert response is not None and response.status_code == 500
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert body["status"] == 500 and "secret-internal-detail" not in body["error"]


def test_pages_and_etcd_outages_are_left_to_their_own_handlers() -> None:
    middleware = ApiJsonErrors(lambda request: None)
    assert middleware.process_exception(RequestFactory().get("/instances/"),
                                        KeyError("x")) is None
    assert middleware.process_exception(RequestFactory().get("/api/instances"),
                                        EtcdUnavailable("down")) is None
