from django.urls import include, path

from portal import health, metrics, styleguide

urlpatterns = [
    path("", include("portal.dashboard.urls")),
    path("", include("portal.accounts.urls")),
    path("manage/", include("portal.manage.urls")),
    path("instances/", include("portal.instances.urls")),
    path("nodes/", include("portal.nodes.urls")),
    path("images/", include("portal.images.urls")),
    path("keypairs/", include("portal.keypairs.urls")),
    path("networks/", include("portal.networks.urls")),
    path("security-groups/", include("portal.secgroups.urls")),
    path("", include("portal.consoles.urls")),
    path("", include("portal.usage.urls")),
    path("api", include("portal.api.urls")),
    # For Prometheus, with the metrics token (SFCLOUD_METRICS_TOKEN).
    path("metrics", metrics.view, name="metrics"),
    *health.routes(),
    # Answers 404 unless DEBUG is on.
    path("styleguide/", styleguide.view, name="styleguide"),
]

# The portal's own error pages (portal.errors), each with a way back.
handler400 = "portal.errors.bad_request"
handler403 = "portal.errors.permission_denied"
handler404 = "portal.errors.page_not_found"
handler500 = "portal.errors.server_error"
