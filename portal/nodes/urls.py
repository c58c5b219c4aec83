from django.urls import path

from portal.nodes import views

urlpatterns = [
    path("", views.node_list, name="node-list"),
    # "-" starts no node's name: these never shadow a node's page.
    path("-/join-tokens/", views.join_token_create, name="join-token-create"),
    path("-/join-tokens/<str:token_id>/revoke/", views.join_token_revoke,
         name="join-token-revoke"),
    path("<str:name>/", views.node_detail, name="node-detail"),
    path("<str:name>/delete/", views.node_delete, name="node-delete"),
    path("<str:name>/maintenance/", views.node_maintenance, name="node-maintenance"),
]
