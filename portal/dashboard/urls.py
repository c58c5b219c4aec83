from django.urls import path

from portal.dashboard import views

urlpatterns = [
    path("", views.home, name="home"),
]
