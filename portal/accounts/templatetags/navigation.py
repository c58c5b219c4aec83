"""The top bar's navigation: which sections a person sees, and which one they are in."""

from __future__ import annotations

from dataclasses import dataclass

from django import template
from django.urls import reverse

register = template.Library()


@dataclass(frozen=True)
class Section:
    label: str
    url_name: str
    # A context flag (from portal.accounts.context) the person needs to see it, if any.
    needs: str | None = None


SECTIONS = (
    Section("Dashboard", "home"),
    Section("Instances", "instance-list"),
    Section("Images", "image-list"),
    Section("Networks", "network-list"),
    Section("Security groups", "secgroup-list"),
    Section("Keypairs", "keypair-list"),
    Section("Nodes", "node-list", needs="is_system"),
    Section("Admin", "manage", needs="may_manage"),
)


@dataclass(frozen=True)
class NavLink:
    label: str
    url: str
    # aria-current: "page" on the section's own page, "true" on a page inside it, else "".
    current: str


@register.simple_tag(takes_context=True)
def main_nav(context: template.Context) -> list[NavLink]:
    path = context["request"].path
    links = []
    for section in SECTIONS:
        if section.needs is not None and not context.get(section.needs):
            continue
        url = reverse(section.url_name)
        # The dashboard is "/", which every path starts with.
        inside = path.startswith(url) and url != "/"
        current = "page" if path == url else "true" if inside else ""
        links.append(NavLink(section.label, url, current))
    return links
