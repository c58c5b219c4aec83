from django.urls import path

from portal.nodes import views

urlpatterns = [
    path("", views.node_list, name="node-list"),
    path("<str:name>/", views.node_detail, name="node-detail"),
    path("<str:name>/delete/", views.node_delete, name="node-delete"),
    path("<str:name>/maintenance/", views.node_maintenance, name="node-maintenance"),
]
