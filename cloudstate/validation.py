r"""What a valid name, size or URL is. Both the API and the pages call these,
so a bad value gets the same message wherever it came from.

Every pattern here and elsewhere is matched whole, with ``fullmatch``:
``^...$`` with ``match`` lets a final newline through ("web\n" would be a
hostname, and reach dnsmasq's files). Character classes are spelt out in
ASCII (never ``\d``, ``\w`` or ``str.isdigit``, which take Unicode digits and
letters), so a look-alike of a name is not a name.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

MAX_CPUS = 64
MIN_MEMORY_MIB = 64
MAX_MEMORY_MIB = 1024 * 1024
MAX_DISK_GB = 16 * 1024
MAX_DISKS = 8
# The graphics devices a guest may ask for (Shaken Fist's `video`), and the
# video memory it may give them, in KiB as Shaken Fist counts it.
VIDEO_MODELS = ("cirrus", "vga", "virtio", "qxl", "bochs")
MIN_VIDEO_KIB = 1024
MAX_VIDEO_KIB = 256 * 1024
DEFAULT_VIDEO = {"model": "cirrus", "memory": 16384}

_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_NAMESPACE = re.compile(r"[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?")
# A person's login name: what Django allows, in ASCII only.
_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,149}")
# Forms send numbers as text; spaces around them are forgiven, nothing else.
_DIGITS = re.compile(r" *-?[0-9]+ *")


def shown(value: Any, limit: int = 60) -> str:
    """A value someone gave, as a message quotes it: text in double quotes,
    cut short, with control characters made visible; anything else named as
    JSON would name it. Messages say this rather than Python's repr (quotes
    and escapes that read as a program's, not the portal's)."""
    if isinstance(value, str):
        text = value if len(value) <= limit else value[:limit - 1] + "\u2026"
        visible = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
        return f'"{visible}"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return "a list" if isinstance(value, list | tuple) else "an object" \
        if isinstance(value, dict) else f"a {type(value).__name__}"


class ValidationError(ValueError):
    """A value a user gave is not acceptable; the message says why."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def hostname(value: Any, field: str = "name") -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError(field, "must be a non-empty string")
    if not _HOSTNAME.fullmatch(value) or value.isdigit():
        raise ValidationError(
            field,
            f"{shown(value)} is not a valid hostname: use 1-63 letters, digits and hyphens, "
            "not starting or ending with a hyphen",
        )
    return value


def dns_name(value: Any, field: str = "name") -> str:
    """A DNS name (dotted labels, each a hostname's, 253 characters at most),
    lower-cased, without a final dot."""
    if not isinstance(value, str) or len(value) > 253 or not all(
            _HOSTNAME.fullmatch(label) for label in value.rstrip(".").split(".")):
        raise ValidationError(field, f"{value!r} is not a valid DNS name")
    return value.rstrip(".").lower()


def namespace_name(value: Any, field: str = "namespace") -> str:
    if not isinstance(value, str) or not _NAMESPACE.fullmatch(value):
        raise ValidationError(
            field,
            f"{shown(value)} is not a valid namespace name: use 1-63 lowercase letters, digits, "
            "hyphens and underscores, starting and ending with a letter or digit",
        )
    return value


def username(value: Any, field: str = "username") -> str:
    if not isinstance(value, str) or not _USERNAME.fullmatch(value):
        raise ValidationError(
            field,
            f"{shown(value)} is not a valid username: use 1-150 letters, digits and . _ @ + -, "
            "starting with a letter or digit",
        )
    return value


def integer(value: Any, field: str, low: int, high: int, unit: str = "") -> int:
    """An int (or a string of digits, as forms send) within [low, high]."""
    if isinstance(value, bool):
        raise ValidationError(field, "must be a whole number")
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise ValidationError(field, f"must be a whole number, not {shown(value)}")
    if not low <= value <= high:
        suffix = f" {unit}" if unit else ""
        raise ValidationError(field, f"must be between {low} and {high}{suffix}, not {value}")
    return value


def cpus(value: Any) -> int:
    return integer(value, "cpus", 1, MAX_CPUS)


def memory_mib(value: Any) -> int:
    return integer(value, "memory", MIN_MEMORY_MIB, MAX_MEMORY_MIB, "MiB")


def disk_gb(value: Any, field: str = "disk size") -> int:
    return integer(value, field, 1, MAX_DISK_GB, "GB")


def image_url(value: Any, field: str = "base") -> str:
    """An http(s) URL; whether it may be fetched is decided when fetching."""
    if not isinstance(value, str):
        raise ValidationError(field, "must be a string")
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        raise ValidationError(field, f"{shown(value)} is not a valid URL ({exc})") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(field, f"{shown(value)} is not an http or https URL")
    if len(value) > 2048:
        raise ValidationError(field, "URL is longer than 2048 characters")
    return value


def video(value: Any) -> dict[str, Any]:
    """Shaken Fist's ``video``: a model from a fixed set and its memory.
    Only those two are kept (other keys are ignored, as the API ignores
    unknown keys): the record is mirrored into every agent and portal."""
    if value is None or value == {}:
        return dict(DEFAULT_VIDEO)
    if not isinstance(value, dict):
        raise ValidationError("video", "must be an object with model and memory")
    model = value.get("model") or DEFAULT_VIDEO["model"]
    if model not in VIDEO_MODELS:
        raise ValidationError("video.model", f"{shown(str(model), 40)} is not offered; use one of "
                                             f"{', '.join(VIDEO_MODELS)}")
    memory = DEFAULT_VIDEO["memory"] if value.get("memory") is None else value["memory"]
    memory = integer(memory, "video.memory", MIN_VIDEO_KIB, MAX_VIDEO_KIB, "KiB")
    return {"model": model, "memory": memory}
