from __future__ import annotations

import pytest

from cloudstate import validation
from cloudstate.validation import ValidationError


@pytest.mark.parametrize("name", ["vm1", "a", "web-01", "A" * 63, "x9"])
def test_good_hostnames(name: str) -> None:
    assert validation.hostname(name) == name


@pytest.mark.parametrize("name", ["", "-vm", "vm-", "has space", "dot.ted", "a" * 64, "under_score",
                                  "123", None, 7, ["vm"]])
def test_bad_hostnames_name_the_field(name: object) -> None:
    with pytest.raises(ValidationError) as caught:
        validation.hostname(name)
    assert caught.value.field == "name"


@pytest.mark.parametrize("value,expected", [(1, 1), ("2", 2), (64, 64), (4.0, 4)])
def test_cpus_accepts_whole_numbers(value: object, expected: int) -> None:
    assert validation.cpus(value) == expected


@pytest.mark.parametrize("value", [0, -1, 65, 1000000, "two", True, 1.5, None, [1]])
def test_cpus_refuses_absurd_or_mistyped(value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        validation.cpus(value)
    assert "cpus" in str(caught.value)


def test_memory_message_gives_the_range_and_unit() -> None:
    with pytest.raises(ValidationError) as caught:
        validation.memory_mib(-5)
    assert "between 64 and 1048576 MiB, not -5" in str(caught.value)


def test_disk_size_limits() -> None:
    assert validation.disk_gb(1) == 1
    for bad in (0, -1, 10**9):
        with pytest.raises(ValidationError):
            validation.disk_gb(bad)


@pytest.mark.parametrize("url", ["http://example.com/a.qcow2", "https://h:8443/x"])
def test_image_urls(url: str) -> None:
    assert validation.image_url(url) == url


@pytest.mark.parametrize("url", ["ftp://h/x", "file:///etc/passwd", "http://", "not a url",
                                 "gopher://h/", 5])
def test_bad_image_urls(url: object) -> None:
    with pytest.raises(ValidationError):
        validation.image_url(url)


@pytest.mark.parametrize("name", ["system", "team-a", "a", "lab_2"])
def test_namespace_names(name: str) -> None:
    assert validation.namespace_name(name) == name


@pytest.mark.parametrize("name", ["", "Team", "-a", "a-", "has space", "x" * 64])
def test_bad_namespace_names(name: str) -> None:
    with pytest.raises(ValidationError):
        validation.namespace_name(name)
