"""The rules for metadata, the same for every kind of object that has it
(instances, networks, namespaces; artifacts, interfaces and nodes next).

Shaken Fist keeps any JSON value under a key; its client sends ``tags``
and ``affinity`` as parsed JSON and everything else as strings. Keys are
path segments in the API, so they may not hold a slash.
"""

from __future__ import annotations

import json
import re
from typing import Any

from cloudstate.validation import ValidationError, shown

MAX_KEYS = 64
MAX_BYTES = 16 * 1024
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}")


def validate_key(key: object) -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValidationError(
            "key", f"{shown(key)} is not a valid metadata key: use 1-128 letters, digits and "
                   ". _ : @ + -, starting with a letter or digit")
    return key


def validate_value(value: Any) -> Any:
    try:
        encoded = json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError("value", f"must be JSON ({exc})") from exc
    if len(encoded) > MAX_BYTES:
        raise ValidationError("value", f"is larger than {MAX_BYTES} bytes")
    return value


def with_item(metadata: dict[str, Any], key: str, value: Any, kind: str) -> dict[str, Any]:
    """``metadata`` with ``key`` set, refused if the whole grows too large."""
    return _within_limits({**metadata, key: value}, kind, "key", "value")


def validate_all(metadata: Any, kind: str) -> dict[str, Any]:
    """A whole metadata object given at create: every key and value checked
    as PUT checks one, and the whole within the same limits."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise ValidationError("metadata", "must be an object of keys and values")
    for key, value in metadata.items():
        validate_key(key)
        validate_value(value)
    return _within_limits(dict(metadata), kind, "metadata", "metadata")


def _within_limits(metadata: dict[str, Any], kind: str, count_field: str,
                   size_field: str) -> dict[str, Any]:
    if len(metadata) > MAX_KEYS:
        raise ValidationError(count_field, f"{_article(kind)} {kind} may have at most "
                                           f"{MAX_KEYS} metadata keys")
    if len(json.dumps(metadata)) > MAX_BYTES:
        raise ValidationError(size_field, f"{_article(kind)} {kind}'s metadata may take at "
                                          f"most {MAX_BYTES} bytes in all")
    return metadata


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"
