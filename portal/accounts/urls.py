from django.contrib.auth import views as auth_views
from django.urls import path

from portal.accounts import manage, views
from portal.accounts.login import LoginView

urlpatterns = [
    path("login/", LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("namespace/", views.switch_namespace, name="switch-namespace"),
    path("account/tokens/", views.token_list, name="token-list"),
    path("account/tokens/<int:token_id>/revoke/", views.token_revoke, name="token-revoke"),
    path("account/password/", views.password_change, name="password-change"),
    # The admin pages (not Django's admin site).
    path("manage/", manage.manage_home, name="manage"),
    path("manage/namespaces/", manage.namespace_list, name="namespace-admin-list"),
    path("manage/namespaces/<str:namespace>/", manage.namespace_detail, name="namespace-admin"),
    path("manage/namespaces/<str:namespace>/delete/", manage.namespace_delete,
         name="namespace-admin-delete"),
    path("manage/namespaces/<str:namespace>/members/", manage.namespace_members,
         name="namespace-admin-members"),
    path("manage/namespaces/<str:namespace>/members/<int:user_id>/remove/",
         manage.namespace_member_remove, name="namespace-admin-member-remove"),
    path("manage/namespaces/<str:namespace>/keys/", manage.namespace_key_create,
         name="namespace-admin-keys"),
    path("manage/namespaces/<str:namespace>/keys/<str:key_name>/rotate/",
         manage.namespace_key_rotate, name="namespace-admin-key-rotate"),
    path("manage/namespaces/<str:namespace>/keys/<str:key_name>/delete/",
         manage.namespace_key_delete, name="namespace-admin-key-delete"),
    path("manage/people/", manage.user_list, name="user-admin-list"),
    path("manage/people/<int:user_id>/", manage.user_detail, name="user-admin"),
    path("manage/people/<int:user_id>/active/", manage.user_active, name="user-admin-active"),
    path("manage/people/<int:user_id>/password/", manage.user_password,
         name="user-admin-password"),
    path("manage/people/<int:user_id>/memberships/", manage.user_membership,
         name="user-admin-membership"),
    path("manage/people/<int:user_id>/memberships/<str:namespace>/remove/",
         manage.user_membership_remove, name="user-admin-membership-remove"),
    path("manage/audit/", manage.audit_list, name="audit-list"),
]
