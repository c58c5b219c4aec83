"""The JSON API, mounted at /api. Paths have no trailing slash, as Shaken
Fist's client sends them."""

from django.urls import path

from portal.api.views import auth, instances, nodes, root

urlpatterns = [
    path("", root.root),
    path("/", root.root),
    path("/auth", auth.auth),
    path("/instances", instances.collection),
    path("/instances/<str:ref>", instances.detail),
    path("/instances/<str:ref>/metadata", instances.metadata),
    path("/instances/<str:ref>/interfaces", instances.interfaces),
    path("/nodes", nodes.node_list),
    path("/nodes/<str:ref>", nodes.node_detail),
]
