from django.urls import path

from portal.images import views

urlpatterns = [
    path("", views.image_list, name="image-list"),
    path("cache/", views.image_cache, name="image-cache"),
    path("<uuid:uuid>/", views.image_detail, name="image-detail"),
    path("<uuid:uuid>/delete/", views.image_delete, name="image-delete"),
]
