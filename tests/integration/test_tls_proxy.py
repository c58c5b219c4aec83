"""Behind a proxy that terminates TLS: with SFCLOUD_TLS_PROXY the portal
believes the proxy's X-Forwarded-Proto, so its cookies are secure and HSTS
is sent; without the setting, the header is not believed."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import requests

from tests.support.cloud import Cloud
from tests.support.consoles import SecondPortal

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def proxied(cloud: Cloud) -> Iterator[SecondPortal]:
    portal = SecondPortal(cloud, SFCLOUD_TLS_PROXY="on")
    yield portal
    portal.stop()


def _login_page(base: str, forwarded: bool) -> requests.Response:
    headers = {"X-Forwarded-Proto": "https"} if forwarded else {}
    return requests.get(f"{base}/login/", headers=headers, timeout=30)


def test_behind_the_proxy_cookies_are_secure_and_hsts_is_sent(proxied: SecondPortal) -> None:
    page = _login_page(proxied.url, forwarded=True)
    assert page.status_code == 200
    assert page.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    cookie = page.headers["Set-Cookie"]
    assert "csrftoken=" in cookie and re.search(r";\s*Secure", cookie, re.I)


def test_without_the_setting_the_header_is_not_believed(cloud: Cloud) -> None:
    page = _login_page(cloud.url, forwarded=True)
    assert "Strict-Transport-Security" not in page.headers
    assert not re.search(r";\s*Secure", page.headers["Set-Cookie"], re.I)
