"""How a setting is declared, and the kinds of value one may hold.

A ``Kind`` turns the text of an environment variable into a value, or says
why it cannot (a ValueError with a short reason), and says in a few words
what it accepts; the reader puts the variable's name in front. A
``Setting`` is one declared variable: its kind, default, one line of help
and which programs read it. The declarations themselves are in
``cloudstate.settings``; this module only knows how to read one.

Only the standard library here: ``make run`` checks the settings with the
system's Python before it installs anything.
"""

from __future__ import annotations

import enum
import ipaddress
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class SettingsError(ValueError):
    """One or more settings have values the cloud cannot run with."""


class Reader(enum.Enum):
    """The programs that read a setting (shown in the README's table)."""

    PORTAL = "portal"
    AGENT = "agent"
    RUNNER = "make run"
    UNITS = "systemd units"
    IMAGE_BUILD = "image build"
    TESTS = "tests"


_UNSET: Any = object()  # a kind without an "empty" value needs a default


@dataclass(frozen=True)
class Kind:
    """A type of setting: ``parse`` takes non-empty text, ``accepts`` tells
    people what it takes, ``empty`` is the value when unset with no default."""

    accepts: str
    parse: Callable[[str], Any]
    empty: Any = _UNSET
    # A secret's value is never shown, and may come from a file (NAME_FILE).
    secret: bool = False


# --- the kinds ----------------------------------------------------------------------

TRUE_WORDS = ("1", "yes", "true", "on")
FALSE_WORDS = ("0", "no", "false", "off")


def _boolean(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError("not a boolean")


def _integer(minimum: int | None, maximum: int | None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip(), 10)
        except ValueError:
            raise ValueError("not a whole number") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise ValueError("out of range")
        return value
    return parse


def _number(above: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError("not a number") from None
        if not math.isfinite(value) or value <= above:
            raise ValueError("out of range")
        return value
    return parse


def _text(text: str) -> str:
    return text.strip()


def _words(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _path(text: str) -> Path:
    return Path(text.strip())


def _absolute_paths(text: str) -> tuple[Path, ...]:
    paths = tuple(Path(word) for word in _words(text))
    for path in paths:
        if not path.is_absolute():
            raise ValueError(f"{str(path)!r} is not an absolute path")
    return paths


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    by_lower = {option.lower(): option for option in options}

    def parse(text: str) -> str:
        try:
            return by_lower[text.strip().lower()]
        except KeyError:
            raise ValueError("not one of the choices") from None
    return parse


def parse_endpoints(text: str) -> list[tuple[str, int]]:
    """Turn ``https://a:2379,b:2379`` into ``[("a", 2379), ("b", 2379)]``.

    sfcloud reaches etcd over TLS only (with the cloud's certificates), so
    an ``http://`` endpoint is refused rather than quietly dialled with TLS.
    """
    endpoints = []
    for item in _words(text):
        if "://" in item:
            scheme, item = item.split("://", 1)
            if scheme.lower() != "https":
                raise ValueError(f"{scheme}:// endpoints are not used: etcd is reached over "
                                 "TLS only, write https://host:port")
        item = item.rstrip("/")
        host, _, port = item.rpartition(":")
        if not host:
            host, port = port, "2379"
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{item!r} has no valid port")
        endpoints.append((host.strip("[]"), int(port)))
    if not endpoints:
        raise ValueError("no etcd endpoints given")
    return endpoints


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> list[IPNetwork]:
    """``"127.0.0.0/8, ::1/128"`` -> networks; a typo is an error, not a silent no."""
    networks = []
    for item in _words(text):
        try:
            networks.append(ipaddress.ip_network(item))
        except ValueError as exc:
            raise ValueError(f"{item!r} is not a network in CIDR form: {exc}") from None
    return networks


def parse_ipv4_addresses(text: str) -> tuple[str, ...]:
    """``"192.0.2.53, 198.51.100.53"`` -> the addresses, in order."""
    addresses = []
    for item in _words(text):
        try:
            addresses.append(str(ipaddress.IPv4Address(item)))
        except ValueError:
            raise ValueError(f"{item!r} is not an IPv4 address") from None
    return tuple(addresses)


def _ip_address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise ValueError("not an IP address") from None


def _ipv4_address(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text.strip()))
    except ValueError:
        raise ValueError("not an IPv4 address") from None


def _http_url(text: str) -> str:
    text = text.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL")
    return text


def _https_url(text: str) -> str:
    text = _http_url(text)
    if urlsplit(text).scheme != "https":
        raise ValueError("not an https URL (this link is TLS only)")
    return text


def _origins(text: str) -> list[str]:
    origins = _words(text)
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path:
            raise ValueError(f"{origin!r} is not an origin")
    return origins


def _host_port(text: str) -> str:
    text = text.strip()
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("not host:port")
    return text


BOOL = Kind("1, 0, yes, no, true, false, on or off (any case)", _boolean)
TEXT = Kind("any text", _text, empty="")
WORDS = Kind("comma-separated words", _words, empty=[])
PATH = Kind("a file or directory path", _path, empty=None)
PATHS = Kind("comma-separated absolute paths", _absolute_paths, empty=())
ENDPOINTS = Kind("comma-separated host:port or https://host:port", parse_endpoints)
NETWORKS = Kind("comma-separated networks in CIDR form, e.g. 10.0.0.0/8,fd00::/8",
                parse_networks, empty=[])
IPV4_ADDRESSES = Kind("comma-separated IPv4 addresses", parse_ipv4_addresses, empty=())
IP_ADDRESS = Kind("an IPv4 or IPv6 address", _ip_address)
IPV4_ADDRESS = Kind("an IPv4 address", _ipv4_address, empty="")
HTTPS_URL = Kind("an https:// URL", _https_url)
ORIGINS = Kind("comma-separated origins, scheme://host[:port] with no path", _origins)
HOST_PORT = Kind("host:port, e.g. 127.0.0.1:13000", _host_port)
PORT = Kind("a port, 1 to 65535", _integer(1, 65535))


def integer(minimum: int | None = None, maximum: int | None = None) -> Kind:
    if maximum is not None:
        accepts = f"a whole number from {minimum} to {maximum}"
    elif minimum is not None:
        accepts = f"a whole number, at least {minimum}"
    else:
        accepts = "a whole number"
    return Kind(accepts, _integer(minimum, maximum))


def number(above: float = 0) -> Kind:
    """A decimal number greater than ``above``."""
    return Kind(f"a number greater than {above:g}", _number(above))


def choice(*options: str) -> Kind:
    return Kind(f"one of {', '.join(options)} (any case)", _choice(options))


def pattern(regex: str, accepts: str, empty: Any = _UNSET) -> Kind:
    """Text that must match ``regex`` whole (a name that ends up in paths, say)."""
    compiled = re.compile(regex)

    def parse(text: str) -> str:
        text = text.strip()
        if not compiled.fullmatch(text):
            raise ValueError("not of the right form")
        return text
    return Kind(accepts, parse, empty=empty)


def secret(min_length: int = 1) -> Kind:
    def parse(text: str) -> str:
        if len(text) < min_length:
            raise ValueError("too short")
        return text
    accepts = f"at least {min_length} characters" if min_length > 1 else "any text"
    return Kind(accepts, parse, empty=None, secret=True)


def secret_url(schemes: tuple[str, ...], example: str, *, path_required: bool = False) -> Kind:
    """A URL that may carry a password (so it is a secret), of one of ``schemes``
    (and with a path, a database's name say, when ``path_required``)."""
    def parse(text: str) -> str:
        text = text.strip()
        parts = urlsplit(text)
        if parts.scheme not in schemes:
            raise ValueError(f"not a {' or '.join(s + '://' for s in schemes)} URL")
        if path_required and not parts.path.strip("/"):
            raise ValueError("the URL names no database")
        return text
    return Kind(f"a URL such as {example}", parse, empty=None, secret=True)


# --- one declared setting -----------------------------------------------------------

# A default is either text parsed as the variable's own text would be, or a
# function that works it out when it is read (from other settings, say).
Default = str | Callable[[], Any] | None


@dataclass(frozen=True)
class Setting:
    """One SFCLOUD_ variable, read from the process's environment when asked."""

    name: str
    kind: Kind
    help: str
    readers: tuple[Reader, ...]
    default: Default = None
    # How the README shows the default when it is worked out, or needs words.
    shown_default: str = ""

    def __post_init__(self) -> None:
        # A bad declaration is a programming error: stop at import.
        _declared_right(self.name.startswith("SFCLOUD_") and self.name.isupper(),
                        self.name, "is not an SFCLOUD_ name")
        _declared_right(bool(self.help) and not any(c in self.help for c in "\n|"),
                        self.name, "needs one line of help, without '|'")
        _declared_right(bool(self.readers), self.name, "needs the programs that read it")
        if callable(self.default):
            _declared_right(bool(self.shown_default), self.name,
                            "needs shown_default: what its worked-out default is")
        elif self.default is None:
            _declared_right(self.kind.empty is not _UNSET, self.name, "needs a default")
        else:
            self.kind.parse(self.default)  # a default the kind refuses is a typo

    @property
    def file_variable(self) -> str:
        """Where a secret's value may come from instead: a file this names."""
        return f"{self.name}_FILE"

    def read(self) -> Any:
        """This setting's value now; SettingsError names the variable if it is bad."""
        text = self._text()
        if text == "":
            return self.default_value()
        try:
            return self.kind.parse(text)
        except ValueError as exc:
            shown = self.name if self.kind.secret else f"{self.name}={text!r}"
            raise SettingsError(f"{shown}: {exc}; it accepts {self.kind.accepts}") from None

    def default_value(self) -> Any:
        if callable(self.default):
            return self.default()
        if self.default is None:
            return self.kind.empty
        return self.kind.parse(self.default)

    def is_set(self) -> bool:
        return self._text() != ""

    def _text(self) -> str:
        # An empty variable means "unset": env files often carry NAME= lines.
        text = os.environ.get(self.name, "")
        if not self.kind.secret:
            return text
        path = os.environ.get(self.file_variable, "")
        if not path:
            return text
        if text:
            raise SettingsError(
                f"{self.name} and {self.file_variable} are both set; set only one")
        try:
            content = Path(path).read_text().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise SettingsError(f"{self.file_variable}={path!r}: cannot read it: {reason}") \
                from None
        if not content:
            raise SettingsError(f"{self.file_variable}={path!r}: the file is empty")
        return content


def _declared_right(condition: bool, name: str, problem: str) -> None:
    if not condition:
        raise TypeError(f"the declaration of {name} {problem}")
