from django.urls import path

from portal.keypairs import views

urlpatterns = [
    path("", views.keypair_list, name="keypair-list"),
    path("<uuid:uuid>/delete/", views.keypair_delete, name="keypair-delete"),
]
