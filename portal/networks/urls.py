from django.urls import path

from portal.networks import views

urlpatterns = [
    path("", views.network_list, name="network-list"),
    path("new/", views.network_create, name="network-create"),
    path("<uuid:uuid>/", views.network_detail, name="network-detail"),
    path("<uuid:uuid>/delete/", views.network_delete, name="network-delete"),
    # The interfaces section of an instance's page, and its float buttons.
    path("instance/<uuid:uuid>/interfaces/", views.instance_interfaces,
         name="instance-interfaces"),
    path("instance/<uuid:uuid>/interfaces/add/", views.instance_interface_add,
         name="instance-interface-add"),
    path("instance/<uuid:uuid>/interfaces/<uuid:interface>/remove/",
         views.instance_interface_remove, name="instance-interface-remove"),
    path("interface/<uuid:uuid>/float/", views.interface_float, name="interface-float"),
    path("interface/<uuid:uuid>/defloat/", views.interface_defloat, name="interface-defloat"),
    path("interface/<uuid:uuid>/security-groups/", views.interface_security_groups,
         name="interface-security-groups"),
]
