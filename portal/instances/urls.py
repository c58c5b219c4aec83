from django.urls import path, register_converter

from portal.instances import actions, bulk, detail, views


class TabConverter:
    """The instance page's tabs, each its own address (/instances/<uuid>/console/)."""

    regex = "|".join(detail.TABS)

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(TabConverter, "tab")

urlpatterns = [
    path("", views.instance_list, name="instance-list"),
    path("new/", views.instance_create, name="instance-create"),
    path("bulk/", bulk.bulk_action, name="instance-bulk"),
    path("<uuid:uuid>/", views.instance_detail, name="instance-detail"),
    path("<uuid:uuid>/<tab:tab>/", views.instance_detail, name="instance-tab"),
    path("<uuid:uuid>/delete/", views.instance_delete, name="instance-delete"),
    path("<uuid:uuid>/power/<str:action>/", actions.power_action, name="instance-power"),
    path("<uuid:uuid>/snapshot/", actions.snapshot, name="instance-snapshot"),
    path("<uuid:uuid>/metadata/", actions.metadata_set, name="instance-metadata-set"),
    path("<uuid:uuid>/metadata/<str:key>/delete/", actions.metadata_delete,
         name="instance-metadata-delete"),
]
