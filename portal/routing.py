from django.urls import path

from portal.instances.consumers import InstanceListConsumer

websocket_urlpatterns = [
    path("ws/instances/", InstanceListConsumer.as_asgi()),
]
