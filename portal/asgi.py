"""The portal's ASGI application: pages and API over HTTP, live state and
consoles over websockets, and a lifespan hook that starts the live hub.

Websockets are only accepted from the portal's own exact origins
(scheme://host:port): Channels' AllowedHostsOriginValidator ignores the
port, so another service on the same host could otherwise open them with
the user's cookies.
"""

from __future__ import annotations

import os

from cloudstate import privacy

# Sessions, password hashes, token digests: the portal's files are its own.
privacy.private_umask()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

django_application = get_asgi_application()

from portal.bodylimit import BodyLimit  # noqa: E402
from portal.lifespan import lifespan  # noqa: E402
from portal.metrics import CountWebsockets  # noqa: E402
from portal.routing import (  # noqa: E402
    AGENT_PREFIX,
    agent_websocket_urlpatterns,
    websocket_urlpatterns,
)

browser_websockets = OriginValidator(
    AuthMiddlewareStack(URLRouter(websocket_urlpatterns)), settings.PORTAL_ORIGINS
)
agent_websockets = URLRouter(agent_websocket_urlpatterns)


async def websockets(scope, receive, send):  # type: ignore[no-untyped-def]
    """Agents' websockets skip the browser checks (they have no Origin or
    session) and authenticate with a signed token instead."""
    if scope["path"].startswith(AGENT_PREFIX):
        return await agent_websockets(scope, receive, send)
    return await browser_websockets(scope, receive, send)


application = ProtocolTypeRouter({
    # Request bodies are limited per route as they arrive, before Django reads them.
    "http": BodyLimit(ASGIStaticFilesHandler(django_application)),
    "websocket": CountWebsockets(websockets),
    "lifespan": lifespan,
})
