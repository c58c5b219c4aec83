from django.urls import path

from portal.instances import views

urlpatterns = [
    path("", views.instance_list, name="instance-list"),
    path("new/", views.instance_create, name="instance-create"),
    path("<uuid:uuid>/", views.instance_detail, name="instance-detail"),
    path("<uuid:uuid>/delete/", views.instance_delete, name="instance-delete"),
]
