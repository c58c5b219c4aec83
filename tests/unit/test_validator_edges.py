"""Every validator of a name, key, address or number, fed the edge cases an
attacker tries: a trailing newline (``$`` matches before one), spaces around
the value, Unicode look-alikes, nothing at all, and one past the longest.

Each validator is listed with a value it accepts and its longest accepted
length; the edges are derived from that value. A validator that normalises
(a MAC, an address) may accept a padded value, but must hand back the clean
one: nothing with a newline or a space ever comes out of a validator.

The last test reads the production sources, so a new pattern written with
``^...$`` and ``match`` fails here before it ships.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cloudstate import metadata, netvalidation, validation
from cloudstate.config import REPO_ROOT
from cloudstate.validation import ValidationError

NET = ipaddress.IPv4Network("10.0.0.0/24")


def _portal_names() -> list[tuple[str, Callable[[Any], Any], str, int]]:
    from portal.cloud import artifacts, keypairs, uploads
    from portal.cloud.errors import BadRequest

    def upload_sha512(value: Any) -> Any:
        try:
            return uploads.checked_sha512(value)
        except BadRequest as exc:
            raise ValidationError("sha512", exc.message) from None

    return [("image name", artifacts.validate_name, "debian-12.qcow2", 255),
            ("keypair name", keypairs.validate_name, "me@laptop", 63),
            ("upload sha512", upload_sha512, "a" * 128, 0)]


PORTAL_IDS = ["image name", "keypair name", "upload sha512"]


def _sha512(value: Any) -> Any:
    from nodeagent.images.blobs import ImageError, check_sha512

    try:
        return check_sha512(value)
    except ImageError as exc:
        raise ValidationError("sha512", exc.message) from None


# (what, validator, a value it accepts, the longest it accepts or 0 for no length rule)
VALIDATORS: list[tuple[str, Callable[[Any], Any], str, int]] = [
    ("hostname", validation.hostname, "web-01", 63),
    ("dns name", validation.dns_name, "db.example.org", 253),
    ("namespace", validation.namespace_name, "team-a", 63),
    ("username", validation.username, "alice.b@lab", 150),
    ("network name", netvalidation.network_name, "web.net_1", 63),
    ("metadata key", metadata.validate_key, "k8s.io:role", 128),
    ("mac", netvalidation.mac_address, "02:00:00:12:34:56", 0),
    ("address", lambda v: netvalidation.address_in(v, NET), "10.0.0.20", 0),
    ("netblock", lambda v: str(netvalidation.netblock(v)), "10.0.0.0/24", 0),
    ("nic model", netvalidation.nic_model, "virtio", 0),
    ("cpus", validation.cpus, "2", 0),
    ("memory", validation.memory_mib, "256", 0),
    ("sha512", _sha512, "a" * 128, 0),
]
EMPTY_MEANS_DEFAULT = {"nic model": "virtio", "upload sha512": None}
LOOKALIKES = {  # a character -> one that looks like it
    "a": "\u0430", "e": "\u0435", "o": "\u043e", "c": "\u0441", "p": "\u0440", "i": "\u0456",
    "0": "\uff10", "1": "\uff11", "2": "\u0662", "-": "\u2010", ".": "\u2024", ":": "\uff1a",
}


def _all_validators() -> list[tuple[str, Callable[[Any], Any], str, int]]:
    return VALIDATORS + _portal_names()


def _lookalike(value: str) -> str:
    for index, char in enumerate(value):
        if char in LOOKALIKES:
            return value[:index] + LOOKALIKES[char] + value[index + 1:]
    raise AssertionError(f"no look-alike for any character of {value!r}")


def _refused_or_clean(check: Callable[[Any], Any], value: Any, clean: str) -> None:
    """Either refused, or accepted as exactly the clean value."""
    try:
        result = check(value)
    except ValidationError:
        return
    assert str(result) == clean, f"{value!r} came out as {result!r}"


@pytest.mark.parametrize("what,check,good,longest", _all_validators(),
                         ids=[entry[0] for entry in VALIDATORS] + PORTAL_IDS)
def test_edges(what: str, check: Callable[[Any], Any], good: str, longest: int) -> None:
    accepted = str(check(good))
    for padded in (good + "\n", good + "\r\n", good + "\n\n", "\n" + good, good + "\x00",
                   " " + good, good + " ", "\t" + good, good + "\u00a0", good + "\u200b"):
        _refused_or_clean(check, padded, accepted)
    for refused in (" ", "\n", _lookalike(good), good + "\n" + good, good + "/x"):
        with pytest.raises(ValidationError):
            check(refused)
    if what in EMPTY_MEANS_DEFAULT:
        assert check("") == EMPTY_MEANS_DEFAULT[what]
    else:
        with pytest.raises(ValidationError):
            check("")
    # Fullwidth letters and digits look like ASCII but are other characters.
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in good)
    with pytest.raises(ValidationError):
        check(fullwidth)
    if longest:
        stretched = (good * (longest // len(good) + 1))[:longest]
        stretched = stretched.rstrip("-.:@+_") or stretched
        stretched += good[0] * (longest - len(stretched))
        assert check(stretched) == stretched
        with pytest.raises(ValidationError):
            check(stretched + good[0])


def test_integers_take_ascii_digits_only() -> None:
    assert validation.cpus(" 4 ") == 4
    for bad in ("\u0664", "\uff14", "4\n", "4\u00a0", "\u00b2", "+4", "4.0", "0x4"):
        with pytest.raises(ValidationError):
            validation.cpus(bad)


# --- no pattern may anchor with ``$`` and ``match`` again ------------------------------

_SOURCES = ("cloudstate", "portal", "nodeagent")
_DOLLAR_PATTERN = re.compile(r"""re\.compile\(r?["'][^"']*\$["']""")
_MATCH_CALL = re.compile(r"\b_?[A-Z][A-Z0-9_]*\.match\(")


def test_no_validator_anchors_with_dollar_and_match() -> None:
    offenders = []
    for package in _SOURCES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if _DOLLAR_PATTERN.search(line) or _MATCH_CALL.search(line):
                    offenders.append(f"{Path(path).relative_to(REPO_ROOT)}:{number}: "
                                     f"{line.strip()}")
    assert not offenders, ("match whole values with fullmatch (``$`` lets a final newline "
                           "through):\n" + "\n".join(offenders))


def test_a_hot_plugged_nic_takes_the_next_order_then_the_lowest_free() -> None:
    assert netvalidation.next_interface_order([]) == 0
    assert netvalidation.next_interface_order([0, 3]) == 4
    # Removing and adding NICs climbs; it never passes what the agent accepts.
    top = netvalidation.MAX_INTERFACE_ORDER
    assert netvalidation.next_interface_order([top - 1]) == top
    assert netvalidation.next_interface_order([0, 1, top]) == 2
