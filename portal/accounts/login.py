"""Logging in, with failed attempts limited per account and per address."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpResponse
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters

from cloudstate.vocabulary import ObjectKind
from portal.accounts import audit, throttle
from portal.accounts.actor import Actor, address_of
from portal.accounts.models import AuditAction

LOGIN = AuditAction.LOGIN
SESSION = ObjectKind.SESSION


class ThrottledAuthenticationForm(AuthenticationForm):
    throttled = False

    def clean(self) -> dict[str, Any]:
        username = (self.cleaned_data.get("username") or "").strip()
        source = address_of(self.request)
        stranger = Actor.unknown(username, source)
        refusal = throttle.check(username, source)
        if refusal is not None:
            self.throttled = True
            audit.record_now(stranger, None, LOGIN, SESSION, object_name=username,
                             outcome=audit.Outcome.DENIED, detail=refusal.message)
            raise forms.ValidationError(refusal.message, code="throttled")
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            throttle.failed(username, source)
            audit.record_now(stranger, None, LOGIN, SESSION, object_name=username,
                             outcome=audit.Outcome.REFUSED, detail="wrong username or password")
            raise
        if self.user_cache is None:  # a field was missing: its error is shown
            return cleaned
        throttle.succeeded(username)
        user = self.get_user()
        audit.record_now(Actor.own_account(user, source), None, LOGIN, SESSION,
                         object_name=username, object_id=str(user.pk))
        return cleaned


@method_decorator(sensitive_post_parameters("password"), name="dispatch")
class LoginView(auth_views.LoginView):
    form_class = ThrottledAuthenticationForm
    redirect_authenticated_user = True

    def form_invalid(self, form: ThrottledAuthenticationForm) -> HttpResponse:  # type: ignore[override]
        response = super().form_invalid(form)
        if form.throttled:
            response.status_code = 429
        return response
