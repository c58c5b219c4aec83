"""The SSRF guard, against the encodings in testing-anchors §4.5.

Every host here is a literal the system resolver turns into an address
without asking the network.
"""

from __future__ import annotations

import ipaddress

import pytest

from cloudstate import urlguard
from cloudstate.urlguard import FetchPolicy, URLRefused, check_url

OPEN = FetchPolicy()
LOOPBACK = FetchPolicy(allowed_networks=[ipaddress.ip_network("127.0.0.0/8")])
# Allows everything, to show that some addresses are refused regardless.
EVERYTHING = FetchPolicy(allowed_networks=[ipaddress.ip_network("0.0.0.0/0"),
                                           ipaddress.ip_network("::/0")])

METADATA_SPELLINGS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://2852039166/",
    "http://0xa9fea9fe/",
    "http://0251.0376.0251.0376/",
    "http://169.254.43518/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:a9fe:a9fe]/",
]


@pytest.mark.parametrize("url", METADATA_SPELLINGS)
@pytest.mark.parametrize("policy", [OPEN, LOOPBACK, EVERYTHING], ids=["open", "lo", "all"])
async def test_metadata_service_refused_however_spelled(url: str, policy: FetchPolicy) -> None:
    with pytest.raises(URLRefused) as caught:
        await check_url(url, policy)
    message = caught.value.message
    assert "169.254.169.254" in message
    assert "metadata" in message


async def test_message_names_the_host_as_given() -> None:
    with pytest.raises(URLRefused, match="2852039166 .which resolves to 169.254.169.254"):
        await check_url("http://2852039166/", OPEN)


@pytest.mark.parametrize(("url", "words"), [
    ("http://[::a9fe:a9fe]/", "IPv4-compatible"),
    ("http://[64:ff9b::a9fe:a9fe]/", "NAT64"),
    ("http://[64:ff9b::8.8.8.8]/", "NAT64"),
    ("http://[2002:a9fe:a9fe::1]/", "6to4"),
    ("http://0/", "unspecified"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://169.254.1.1/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://224.0.0.1/", "multicast"),
    ("http://100.100.100.200/", "metadata"),
    ("http://[fd00:ec2::254]/", "metadata"),
])
async def test_refused_even_when_allowed(url: str, words: str) -> None:
    with pytest.raises(URLRefused, match=words):
        await check_url(url, EVERYTHING)


async def test_scoped_link_local_refused() -> None:
    with pytest.raises(URLRefused):
        await check_url("http://[fe80::1%25lo]/", EVERYTHING)


@pytest.mark.parametrize(("url", "words"), [
    ("http://127.1/", "loopback"),
    ("http://127.0.0.1:8080/x", "loopback"),
    ("http://[::1]/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://100.64.0.1/", "carrier-grade NAT"),
    ("http://10.1.2.3/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://[fd12::1]/", "private"),
    ("http://198.18.0.1/", "private"),
])
async def test_internal_addresses_refused_by_default(url: str, words: str) -> None:
    with pytest.raises(URLRefused, match=words):
        await check_url(url, OPEN)


async def test_allowed_network_opens_only_itself() -> None:
    assert await check_url("http://127.1/", LOOPBACK) == [ipaddress.ip_address("127.0.0.1")]
    # Mapped addresses are judged (and returned) as the IPv4 address they are.
    assert await check_url("http://[::ffff:127.0.0.1]:81/", LOOPBACK) == [
        ipaddress.ip_address("127.0.0.1")]
    with pytest.raises(URLRefused, match="loopback"):
        await check_url("http://[::1]/", LOOPBACK)
    cgnat = FetchPolicy(allowed_networks=[ipaddress.ip_network("100.64.0.0/10")])
    assert await check_url("http://100.64.0.1/", cgnat) == [ipaddress.ip_address("100.64.0.1")]


async def test_public_address_accepted() -> None:
    assert await check_url("https://8.8.8.8/image.qcow2", OPEN) == [
        ipaddress.ip_address("8.8.8.8")]
    assert await check_url("HTTP://[2001:4860:4860::8888]/x", OPEN) == [
        ipaddress.ip_address("2001:4860:4860::8888")]


@pytest.mark.parametrize("url", ["http://user@127.0.0.1/", "http://good@127.0.0.1/",
                                 "http://u:p@8.8.8.8/"])
@pytest.mark.parametrize("policy", [OPEN, LOOPBACK], ids=["open", "lo"])
async def test_credentials_refused(url: str, policy: FetchPolicy) -> None:
    with pytest.raises(URLRefused, match="user name or password"):
        await check_url(url, policy)


@pytest.mark.parametrize("url", ["gopher://127.0.0.1:70/", "ftp://8.8.8.8/x", "dict://x/",
                                 "//8.8.8.8/x", "8.8.8.8/x"])
async def test_other_schemes_refused(url: str) -> None:
    with pytest.raises(URLRefused, match="http or https"):
        await check_url(url, EVERYTHING)


async def test_file_only_when_allowed() -> None:
    with pytest.raises(URLRefused, match="file://"):
        await check_url("file:///etc/passwd", EVERYTHING)
    assert await check_url("file:///var/lib/images/x.qcow2", FetchPolicy(allow_file=True)) == []


@pytest.mark.parametrize("url", ["http:///x", "http://127.0.0.1:99999/", "http://[::1/"])
async def test_malformed_refused(url: str) -> None:
    with pytest.raises(URLRefused):
        await check_url(url, LOOPBACK)


async def test_unresolvable_refused() -> None:
    with pytest.raises(URLRefused, match="could not be resolved"):
        await check_url("http://no-such-host.invalid/", OPEN)


async def test_every_resolved_address_must_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    # DNS rebinding's first step: a name with a public address and an
    # internal one. Either could be the one a connection uses.
    async def lying_resolver(host: str, port: int) -> list[urlguard.IPAddress]:
        return [ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(urlguard, "_resolve", lying_resolver)
    with pytest.raises(URLRefused, match="rebind.example .which resolves to 127.0.0.1"):
        await check_url("http://rebind.example/", OPEN)


def test_policy_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SFCLOUD_FETCH_ALLOW", raising=False)
    assert FetchPolicy.from_env() == FetchPolicy()
    monkeypatch.setenv("SFCLOUD_FETCH_ALLOW", " 127.0.0.0/8, ::1/128 ,")
    policy = FetchPolicy.from_env()
    assert policy.allowed_networks == [ipaddress.ip_network("127.0.0.0/8"),
                                       ipaddress.ip_network("::1/128")]
    assert policy.allow_file is False
    monkeypatch.setenv("SFCLOUD_FETCH_ALLOW", "10.0.0.1/8")
    with pytest.raises(ValueError, match="SFCLOUD_FETCH_ALLOW"):
        FetchPolicy.from_env()
