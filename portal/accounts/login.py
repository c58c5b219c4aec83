"""Checking a person's password, in the log-in form and in the form that
changes it, with failed attempts limited per account and per address.

Both are password guesses someone may automate (the second with a stolen
session), so both go through ``guarded``: a throttled attempt is refused
before the password is looked at, and failed and throttled attempts are
counted on one audit row per account or address and window, so a flood of
them can't flood the audit trail.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django import forms
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm, PasswordChangeForm
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters

from cloudstate.vocabulary import ObjectKind
from portal.accounts import audit, throttle
from portal.accounts.actor import Actor, address_of
from portal.accounts.models import AuditAction

LOGIN = AuditAction.LOGIN
SESSION = ObjectKind.SESSION
T = TypeVar("T")


def guarded(check: Callable[[], T], *, username: str, actor: Actor, action: str, kind: str,
            wrong: str) -> T:
    """Run ``check`` (which raises forms.ValidationError for a wrong
    password) unless this account or address has failed too often lately.
    Raises forms.ValidationError with code "throttled" when refused."""
    source = actor.address
    refusal = throttle.check(username, source)
    if refusal is not None:
        # Throttled attempts are cheap (no password hash): one row counts
        # them all, per account or per address, and window.
        audit.record_repeat_now(actor, None, action, kind, same=refusal.audit_same,
                                object_name=username, outcome=audit.Outcome.DENIED,
                                detail=refusal.message)
        raise forms.ValidationError(refusal.message, code="throttled")
    try:
        return check()
    except forms.ValidationError:
        throttle.failed(username, source)
        audit.record_repeat_now(actor, None, action, kind, same=("object_name", "source"),
                                object_name=username, outcome=audit.Outcome.REFUSED,
                                detail=wrong)
        raise


class ThrottledAuthenticationForm(AuthenticationForm):
    throttled = False

    def clean(self) -> dict[str, Any]:
        username = (self.cleaned_data.get("username") or "").strip()
        source = address_of(self.request)
        try:
            cleaned = guarded(super().clean, username=username,
                              actor=Actor.unknown(username, source), action=LOGIN,
                              kind=SESSION, wrong="wrong username or password")
        except forms.ValidationError as exc:
            self.throttled = exc.code == "throttled"
            raise
        if self.user_cache is None:  # a field was missing: its error is shown
            return cleaned
        throttle.succeeded(username)
        user = self.get_user()
        audit.record_now(Actor.own_account(user, source), None, LOGIN, SESSION,
                         object_name=username, object_id=str(user.pk))
        return cleaned


class ThrottledPasswordChangeForm(PasswordChangeForm):
    """Changing one's own password: the current one is checked as a log-in
    is, so a stolen session can't be used to guess it."""

    throttled = False

    def __init__(self, request: HttpRequest, *args: Any, **kwargs: Any):
        super().__init__(request.user, *args, **kwargs)
        self.request = request

    def clean_old_password(self) -> str:
        actor = Actor.own_account(self.user, address_of(self.request))
        try:
            old: str = guarded(super().clean_old_password, username=self.user.get_username(),
                               actor=actor, action=AuditAction.CHANGE_PASSWORD,
                               kind=ObjectKind.USER, wrong="wrong current password")
        except forms.ValidationError as exc:
            self.throttled = exc.code == "throttled"
            raise
        return old


@method_decorator(sensitive_post_parameters("password"), name="dispatch")
class LoginView(auth_views.LoginView):
    form_class = ThrottledAuthenticationForm
    redirect_authenticated_user = True

    def form_invalid(self, form: ThrottledAuthenticationForm) -> HttpResponse:  # type: ignore[override]
        response = super().form_invalid(form)
        if form.throttled:
            response.status_code = 429
        return response
