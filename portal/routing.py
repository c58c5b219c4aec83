from django.urls import path

from portal.consoles.routing import websocket_urlpatterns as console_urlpatterns
from portal.events.agents import PATH as AGENT_EVENTS_PATH
from portal.events.agents import AgentEventsConsumer
from portal.events.consumers import NodeEventsConsumer
from portal.images.consumers import ImagesConsumer
from portal.instances.consumers import InstanceDetailConsumer, InstanceListConsumer
from portal.networks.consumers import NetworksConsumer
from portal.secgroups.consumers import AddressSetConsumer, SecurityGroupsConsumer

# Browsers' websockets: the session authenticates them and their Origin is checked.
websocket_urlpatterns = [
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
    *console_urlpatterns,
]

# Node agents' websockets: no session or Origin; each consumer checks a token
# signed with the cluster secret.
AGENT_PREFIX = "/ws/agent/"
agent_websocket_urlpatterns = [
    path(AGENT_EVENTS_PATH, AgentEventsConsumer.as_asgi()),
]
