from django.urls import path

from portal.images import uploads, views

urlpatterns = [
    path("", views.image_list, name="image-list"),
    path("cache/", views.image_cache, name="image-cache"),
    path("uploads/", uploads.start, name="upload-start"),
    path("uploads/<uuid:uuid>/", uploads.status, name="upload-status"),
    path("uploads/<uuid:uuid>/chunk/", uploads.chunk, name="upload-chunk"),
    path("uploads/<uuid:uuid>/artifact/", uploads.finish, name="upload-finish"),
    path("blobs/<uuid:uuid>/download/", views.blob_download, name="blob-download"),
    path("<uuid:uuid>/", views.image_detail, name="image-detail"),
    path("<uuid:uuid>/download/", views.image_download, name="image-download"),
    path("<uuid:uuid>/delete/", views.image_delete, name="image-delete"),
]
