"""Template helpers for cloud objects."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from django import template

register = template.Library()


@register.filter
def progress_on(record: Any, node: str) -> int | None:
    return record.progress(node)


@register.filter
def get_item(mapping: Any, key: str) -> Any:
    """mapping[key], or None: templates can't index by a variable."""
    return mapping.get(key) if hasattr(mapping, "get") else None


@register.filter
def jsonish(value: Any) -> str:
    """Strings as they are; anything else as compact JSON."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


@register.filter
def key_type(public_key: str) -> str:
    """An OpenSSH public key's type (its first word), such as ssh-ed25519."""
    return public_key.split(None, 1)[0] if public_key.strip() else ""


@register.filter
def b64size(value: str) -> int:
    try:
        return len(base64.b64decode(value))
    except (binascii.Error, ValueError):
        return 0


@register.filter
def epoch(value: float | None) -> datetime | None:
    """A Unix timestamp (as etcd records keep them) as an aware datetime."""
    return None if value is None else datetime.fromtimestamp(value, tz=UTC)


@register.filter
def mib(value: int) -> str:
    if value < 1024:
        return f"{value} MiB"
    return f"{value / 1024:.1f}".removesuffix(".0") + " GiB"
