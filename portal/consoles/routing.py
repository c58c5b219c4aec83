from django.urls import path

from portal.consoles.consumers import ConsoleConsumer

websocket_urlpatterns = [
    path("ws/consoles/<str:kind>/<uuid:uuid>/", ConsoleConsumer.as_asgi()),
]


def socket_path(kind: str, uuid: str) -> str:
    return f"/ws/consoles/{kind}/{uuid}/"
