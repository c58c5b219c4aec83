"""Usage figures in templates: sparklines drawn on the server as SVG (a list
of many rows gets them with no script and no chart library), and figures
in words."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

register = template.Library()

WIDTH, HEIGHT = 60, 16


@register.filter
def item(mapping: dict[str, Any] | None, key: str) -> Any:
    """``mapping[key]``, or None."""
    return (mapping or {}).get(key)


def _runs(values: list[float | None]) -> list[list[tuple[int, float]]]:
    """The values as runs of (position, value) between gaps."""
    runs: list[list[tuple[int, float]]] = [[]]
    for x, value in enumerate(values):
        if value is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((x, value))
    return [run for run in runs if run]


@register.simple_tag
def sparkline(values: list[float | None] | None, label: str, floor: float = 1.0) -> SafeString:
    """A small line of ``values`` (oldest first), scaled to their largest or
    ``floor``, whichever is more (a guest idling at 2 % stays a flat line)."""
    values = values or []
    present = [v for v in values if v is not None]
    if not present:
        return format_html('<span class="sparkline sparkline--empty" title="{}"></span>',
                           f"{label}: no figures yet")
    top = max(max(present), floor)
    dx = WIDTH / max(len(values) - 1, 1)

    def point(x: int, value: float) -> str:
        return f"{x * dx:.1f},{HEIGHT - 1 - (HEIGHT - 2) * value / top:.1f}"

    lines = format_html_join(
        "", '<polyline points="{}"/>',
        ((" ".join(point(x, v) for x, v in run),) for run in _runs(values) if len(run) > 1))
    dots = format_html_join(
        "", '<circle cx="{}" cy="{}" r="1"/>',
        ((*point(*run[0]).split(","),) for run in _runs(values) if len(run) == 1))
    return format_html(
        '<svg class="sparkline" viewBox="0 0 {} {}" width="{}" height="{}" role="img" '
        'aria-label="{}">{}{}</svg>', WIDTH, HEIGHT, WIDTH, HEIGHT, label, lines, dots)


def _number(value: Any) -> float | None:
    """A figure, or None for anything else (no figure, or a missing variable,
    which templates give as "")."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


@register.filter
def cores_percent(value: Any) -> str:
    """CPU in cores as top shows it: one busy core is 100 %."""
    number = _number(value)
    return "–" if number is None else f"{100 * number:.0f} %"


@register.filter
def share_percent(value: Any, cpus: Any) -> str:
    """CPU in cores as a share of all ``cpus`` (a node's: 100 % is all busy)."""
    number, total = _number(value), _number(cpus)
    return "–" if number is None or not total else f"{100 * number / total:.0f} %"


@register.filter
def sort_value(value: Any) -> str:
    """A figure as a table sorts it: rows with none go last."""
    number = _number(value)
    return "-1" if number is None else f"{number:.4f}"
