from django.contrib.auth import views as auth_views
from django.urls import path

from portal.accounts import views
from portal.accounts.login import LoginView

urlpatterns = [
    path("login/", LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("namespace/", views.switch_namespace, name="switch-namespace"),
    path("account/tokens/", views.token_list, name="token-list"),
    path("account/tokens/<int:token_id>/revoke/", views.token_revoke, name="token-revoke"),
    path("account/password/", views.password_change, name="password-change"),
]
