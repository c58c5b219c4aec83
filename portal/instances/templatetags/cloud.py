"""Template helpers for cloud objects."""

from __future__ import annotations

from datetime import UTC, datetime

from django import template

register = template.Library()


@register.filter
def epoch(value: float | None) -> datetime | None:
    """A Unix timestamp (as etcd records keep them) as an aware datetime."""
    return None if value is None else datetime.fromtimestamp(value, tz=UTC)


@register.filter
def mib(value: int) -> str:
    if value < 1024:
        return f"{value} MiB"
    return f"{value / 1024:.1f}".removesuffix(".0") + " GiB"
