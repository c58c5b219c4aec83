from django.urls import include, path
from django.views.generic import RedirectView

from portal import styleguide

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="instance-list"), name="home"),
    path("", include("portal.accounts.urls")),
    path("manage/", include("portal.manage.urls")),
    path("instances/", include("portal.instances.urls")),
    path("nodes/", include("portal.nodes.urls")),
    path("images/", include("portal.images.urls")),
    path("keypairs/", include("portal.keypairs.urls")),
    path("networks/", include("portal.networks.urls")),
    path("security-groups/", include("portal.secgroups.urls")),
    path("", include("portal.consoles.urls")),
    path("api", include("portal.api.urls")),
    # Answers 404 unless DEBUG is on.
    path("styleguide/", styleguide.view, name="styleguide"),
]
