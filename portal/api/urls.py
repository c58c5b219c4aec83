"""The JSON API, mounted at /api. Paths have no trailing slash, as Shaken
Fist's client sends them. Each area keeps its routes next to its views."""

from django.urls import path

from portal.api.views import auth, instances, namespaces, nodes, root

urlpatterns = [
    path("", root.root),
    path("/", root.root),
    *auth.routes,
    *namespaces.routes,
    *instances.routes,
    *nodes.routes,
]
