#!/usr/bin/env python3
"""Render the portal's style guide to static HTML, without the portal's settings or database.

For looking at the components (and taking screenshots) before or apart from a running portal:

    python deploy/render-styleguide.py            # writes var/styleguide/index.html
    python -m http.server -b 127.0.0.1 -d var/styleguide 8765

then open http://127.0.0.1:8765/ (static files are served through a symlink to portal/static).
--anonymous renders the page as a logged-out visitor sees the top bar.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import django  # noqa: E402
from django.conf import settings  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402


def _stub(request):
    return HttpResponse()


# The names base.html links to; here they only need to resolve.
urlpatterns = [
    path("", _stub, name="home"),
    path("instances/", _stub, name="instance-list"),
    path("images/", _stub, name="image-list"),
    path("networks/", _stub, name="network-list"),
    path("keypairs/", _stub, name="keypair-list"),
    path("nodes/", _stub, name="node-list"),
    path("manage/", _stub, name="manage"),
    path("namespace/", _stub, name="switch-namespace"),
    path("logout/", _stub, name="logout"),
    path("tokens/", _stub, name="token-list"),
]


class _User:
    is_authenticated = True
    is_staff = False

    def get_username(self) -> str:
        return "alice"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anonymous", action="store_true", help="render for a logged-out visitor")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "styleguide")
    args = parser.parse_args()

    settings.configure(
        DEBUG=True,
        SECRET_KEY="styleguide-render-only",  # noqa: S106 - nothing is signed for real
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.messages",
            "django.contrib.staticfiles",
        ],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "DIRS": [ROOT / "portal" / "templates"],
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ],
                    # The top bar's tags and the usage figures', without installing (and
                    # configuring) the portal's apps.
                    "libraries": {"navigation": "portal.accounts.templatetags.navigation",
                                  "usage": "portal.usage.templatetags.usage"},
                },
            }
        ],
        STATIC_URL="/static/",
        USE_TZ=True,
    )
    django.setup()

    from django.contrib.auth.models import AnonymousUser
    from django.contrib.messages import constants
    from django.contrib.messages.storage.base import Message
    from django.template.loader import render_to_string
    from django.test import RequestFactory

    from portal import styleguide

    # On /instances/ so the nav shows what a current section looks like.
    request = RequestFactory().get("/instances/")
    request.user = AnonymousUser() if args.anonymous else _User()
    request._messages = [
        Message(constants.SUCCESS, "Instance web-1 created."),
        Message(constants.ERROR, "Could not power on scratch: node-c is offline."),
    ]
    context = styleguide.context()
    if not args.anonymous:
        context.update(namespaces=["demo", "lab", "system"], current_namespace="demo")

    html = render_to_string("styleguide.html", context, request=request)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "anonymous.html" if args.anonymous else "index.html"
    (args.out / name).write_text(html)
    static = args.out / "static"
    if not static.exists():
        static.symlink_to(ROOT / "portal" / "static", target_is_directory=True)
    print(args.out / name)


if __name__ == "__main__":
    main()
