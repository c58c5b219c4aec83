from django.urls import path

from portal.instances import actions, views

urlpatterns = [
    path("", views.instance_list, name="instance-list"),
    path("new/", views.instance_create, name="instance-create"),
    path("<uuid:uuid>/", views.instance_detail, name="instance-detail"),
    path("<uuid:uuid>/delete/", views.instance_delete, name="instance-delete"),
    path("<uuid:uuid>/power/<str:action>/", actions.power_action, name="instance-power"),
    path("<uuid:uuid>/snapshot/", actions.snapshot, name="instance-snapshot"),
    path("<uuid:uuid>/metadata/", actions.metadata_set, name="instance-metadata-set"),
    path("<uuid:uuid>/metadata/<str:key>/delete/", actions.metadata_delete,
         name="instance-metadata-delete"),
]
