"""The JSON API, mounted at /api. Paths have no trailing slash, as Shaken
Fist's client sends them. Each area keeps its routes next to its views."""

from django.urls import path

from portal import health
from portal.api.views import (
    artifacts,
    auth,
    blobs,
    consoles,
    description,
    events,
    fallback,
    instance_actions,
    instances,
    interfaces,
    keypairs,
    labels,
    namespaces,
    networks,
    nodes,
    root,
    secgroups,
    uploads,
)

urlpatterns = [
    path("", root.root),
    path("/", root.root),
    *description.routes,
    *auth.routes,
    *namespaces.routes,
    *instances.routes,
    *nodes.routes,
    *instance_actions.routes,
    *events.routes,
    *artifacts.routes,
    *blobs.routes,
    *uploads.routes,
    *labels.routes,
    *keypairs.routes,
    *networks.routes,
    *interfaces.routes,
    *secgroups.routes,
    *consoles.routes,
    *health.routes("/"),
    # Last: JSON for every path nothing above matched.
    *fallback.routes,
]
