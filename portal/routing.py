from django.urls import path

from portal.consoles.routing import websocket_urlpatterns as console_urlpatterns
from portal.dashboard.consumers import DashboardConsumer
from portal.events.consumers import NodeEventsConsumer
from portal.images.consumers import ImagesConsumer
from portal.instances.consumers import InstanceDetailConsumer, InstanceListConsumer
from portal.manage.consumers import QuotaConsumer
from portal.networks.consumers import NetworksConsumer
from portal.secgroups.consumers import AddressSetConsumer, SecurityGroupsConsumer
from portal.usage.consumers import InstanceGraphConsumer, NodeGraphConsumer

# Browsers' websockets: the session authenticates them and their Origin is checked.
websocket_urlpatterns = [
    path("ws/dashboard/", DashboardConsumer.as_asgi()),
    path("ws/instances/", InstanceListConsumer.as_asgi()),
    path("ws/instances/<uuid:uuid>/", InstanceDetailConsumer.as_asgi()),
    path("ws/images/", ImagesConsumer.as_asgi()),
    path("ws/images/<uuid:uuid>/", ImagesConsumer.as_asgi()),
    path("ws/networks/", NetworksConsumer.as_asgi()),
    path("ws/networks/<uuid:uuid>/", NetworksConsumer.as_asgi()),
    path("ws/secgroups/", SecurityGroupsConsumer.as_asgi()),
    path("ws/secgroups/<uuid:uuid>/", SecurityGroupsConsumer.as_asgi()),
    path("ws/address-sets/<uuid:uuid>/", AddressSetConsumer.as_asgi()),
    path("ws/nodes/<str:name>/events/", NodeEventsConsumer.as_asgi()),
    path("ws/usage/instances/<uuid:uuid>/", InstanceGraphConsumer.as_asgi()),
    path("ws/usage/nodes/<str:name>/", NodeGraphConsumer.as_asgi()),
    path("ws/quotas/<str:namespace>/", QuotaConsumer.as_asgi()),
    *console_urlpatterns,
]
# Node agents send their events to a listener of their own, over TLS with the
# cloud's certificates (portal.events.agents), never through these.
