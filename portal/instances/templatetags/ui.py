"""Small pieces of markup drawn often: an icon as a tag, not an include, so a
list of fifty rows with a dozen icons each does not render six hundred
templates (components/icon.html is the same markup, for one-offs)."""

from __future__ import annotations

from functools import cache

from django import template
from django.templatetags.static import static
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()


@cache
def _sprite() -> str:
    return static("img/icons.svg")


@register.simple_tag
def icon(name: str, label: str = "", css: str = "") -> SafeString:
    """An icon of the sprite: decorative (hidden from assistive technology)
    unless it has a label."""
    classes = f"icon {css}".strip()
    if label:
        return format_html('<svg class="{}" role="img" aria-label="{}" focusable="false">'
                           '<use href="{}#{}"></use></svg>', classes, label, _sprite(), name)
    return format_html('<svg class="{}" aria-hidden="true" focusable="false">'
                       '<use href="{}#{}"></use></svg>', classes, _sprite(), name)
