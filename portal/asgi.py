"""The portal's ASGI application: pages and API over HTTP, live state and
consoles over websockets, and a lifespan hook that starts the live hub and
the listener node agents send their events to.

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
from portal.routing import websocket_urlpatterns  # noqa: E402

# Every websocket here is a browser's. Node agents send their events to the
# portal's second listener, over TLS with the cloud's certificates
# (portal.events.agents, started by the lifespan).
browser_websockets = OriginValidator(
    AuthMiddlewareStack(URLRouter(websocket_urlpatterns)), settings.PORTAL_ORIGINS
)

application = ProtocolTypeRouter({
    # Request bodies are limited per route as they arrive, before Django reads them.
    "http": BodyLimit(ASGIStaticFilesHandler(django_application)),
    "websocket": CountWebsockets(browser_websockets),
    "lifespan": lifespan,
})
