"""The admin pages, under /manage/."""

from django.urls import path

from portal.manage import audit, namespaces, people

urlpatterns = [
    path("", namespaces.manage_home, name="manage"),
    path("namespaces/", namespaces.namespace_list, name="namespace-admin-list"),
    path("namespaces/<str:namespace>/", namespaces.namespace_detail, name="namespace-admin"),
    path("namespaces/<str:namespace>/delete/", namespaces.namespace_delete,
         name="namespace-admin-delete"),
    path("namespaces/<str:namespace>/members/", namespaces.namespace_members,
         name="namespace-admin-members"),
    path("namespaces/<str:namespace>/members/<int:user_id>/remove/",
         namespaces.namespace_member_remove, name="namespace-admin-member-remove"),
    path("namespaces/<str:namespace>/quota/", namespaces.namespace_quota,
         name="namespace-admin-quota"),
    path("namespaces/<str:namespace>/keys/", namespaces.namespace_key_create,
         name="namespace-admin-keys"),
    path("namespaces/<str:namespace>/keys/<str:key_name>/rotate/",
         namespaces.namespace_key_rotate, name="namespace-admin-key-rotate"),
    path("namespaces/<str:namespace>/keys/<str:key_name>/delete/",
         namespaces.namespace_key_delete, name="namespace-admin-key-delete"),
    path("namespaces/<str:namespace>/trust/", namespaces.namespace_trust_add,
         name="namespace-admin-trust"),
    path("namespaces/<str:namespace>/trust/<str:other>/remove/",
         namespaces.namespace_trust_remove, name="namespace-admin-trust-remove"),
    path("people/", people.user_list, name="user-admin-list"),
    path("people/<int:user_id>/", people.user_detail, name="user-admin"),
    path("people/<int:user_id>/active/", people.user_active, name="user-admin-active"),
    path("people/<int:user_id>/delete/", people.user_delete, name="user-admin-delete"),
    path("people/<int:user_id>/password/", people.user_password, name="user-admin-password"),
    path("people/<int:user_id>/memberships/", people.user_membership,
         name="user-admin-membership"),
    path("people/<int:user_id>/memberships/<str:namespace>/remove/",
         people.user_membership_remove, name="user-admin-membership-remove"),
    path("audit/", audit.audit_list, name="audit-list"),
]
