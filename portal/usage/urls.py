from django.urls import path

from portal.usage import views

urlpatterns = [
    path("instances/<uuid:uuid>/usage/", views.instance_usage, name="instance-usage"),
    path("nodes/<str:name>/usage/", views.node_usage, name="node-usage"),
]
