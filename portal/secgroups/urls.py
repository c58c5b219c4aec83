from django.urls import path

from portal.secgroups import views

urlpatterns = [
    path("", views.group_list, name="secgroup-list"),
    path("<uuid:uuid>/", views.group_detail, name="secgroup-detail"),
    path("<uuid:uuid>/rules/", views.rule_add, name="secgroup-rule-add"),
    path("<uuid:uuid>/rules/<uuid:rule_uuid>/remove/", views.rule_remove,
         name="secgroup-rule-remove"),
    path("<uuid:uuid>/delete/", views.group_delete, name="secgroup-delete"),
    path("address-sets/", views.address_set_create, name="address-set-create"),
    path("address-sets/<uuid:uuid>/", views.address_set_detail, name="address-set-detail"),
    path("address-sets/<uuid:uuid>/delete/", views.address_set_delete,
         name="address-set-delete"),
]
