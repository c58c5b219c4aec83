"""The admin pages' forms."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError as DjangoValidationError

from cloudstate import quotas, validation
from cloudstate.vocabulary import ObjectKind
from portal.accounts.models import AuditAction, AuditEvent, Role, Via
from portal.errors import sentence
from portal.manage.common import ROLE_CHOICES


def checked(check: Any, value: Any, *args: Any) -> Any:
    """``check(value)`` from cloudstate.validation, its refusal as the field's error."""
    try:
        return check(value, *args)
    except validation.ValidationError as exc:
        raise forms.ValidationError(sentence(exc.message)) from None


class NamespaceForm(forms.Form):
    name = forms.CharField(max_length=63, help_text="Lowercase letters, digits, - and _, "
                                                    "starting and ending with a letter or digit.")

    def clean_name(self) -> str:
        return checked(validation.namespace_name, self.cleaned_data["name"], "name")


class KeyForm(forms.Form):
    key_name = forms.CharField(label="Key name", max_length=63,
                               help_text="e.g. ci or backup: lowercase letters, digits, - and _. "
                                         "The secret is generated for you.")

    def clean_key_name(self) -> str:
        return checked(validation.namespace_name, self.cleaned_data["key_name"], "key_name")


class TrustForm(forms.Form):
    external_namespace = forms.CharField(
        label="Namespace to trust", max_length=63,
        help_text="Its members and keys may then see this namespace (and not change it).")


class MemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial=Role.MEMBER)


class MembershipForm(forms.Form):
    """A person's role in one namespace, from their page."""

    namespace = forms.ChoiceField(label="Add to")
    role = forms.ChoiceField(label="as", choices=ROLE_CHOICES, initial=Role.MEMBER)

    def __init__(self, *args: Any, namespaces: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["namespace"].choices = [(n, n) for n in namespaces]


def _password_errors(password: str, username: str) -> list[str]:
    """Django's password rules, checked against a person of that name."""
    try:
        password_validation.validate_password(password, get_user_model()(username=username))
    except DjangoValidationError as exc:
        return list(exc.messages)
    return []


class UserForm(forms.Form):
    username = forms.CharField(max_length=150, help_text="Letters, digits and . _ @ + -.")
    password = forms.CharField(widget=forms.PasswordInput(render_value=False), required=False,
                               help_text="At least 10 characters. Leave empty to generate one "
                                         "(shown once). Never shown back on a page.")
    namespace = forms.ChoiceField(required=False, label="Namespace",
                                  help_text="Optional: make them a member of one now.")
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial=Role.MEMBER)

    def __init__(self, *args: Any, namespaces: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["namespace"].choices = [("", "(none)")] + [(n, n) for n in namespaces]

    def clean_username(self) -> str:
        return checked(validation.username, self.cleaned_data["username"])

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        password = data.get("password")
        if password:
            for message in _password_errors(password, data.get("username") or ""):
                self.add_error("password", message)
        return data


class ResetPasswordForm(forms.Form):
    password = forms.CharField(
        label="New password", required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Leave empty to generate one, shown once. Their sessions end either way.")

    def __init__(self, *args: Any, username: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.username = username

    def clean_password(self) -> str:
        password = self.cleaned_data.get("password") or ""
        if password and (problems := _password_errors(password, self.username)):
            raise forms.ValidationError(problems)
        return password


def _any(choices: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [("", "any"), *choices]


class AuditFilter(forms.Form):
    """The audit trail's filter: the closed vocabularies are choices."""

    actor = forms.CharField(required=False)
    namespace = forms.CharField(required=False)
    action = forms.ChoiceField(required=False,
                               choices=_any([(a.value, a.value) for a in AuditAction]))
    kind = forms.ChoiceField(required=False, label="Kind",
                             choices=_any([(k.value, k.value) for k in ObjectKind]))
    object = forms.CharField(required=False, label="Object",
                             help_text="A kind (instance), a name or a UUID.")
    via = forms.ChoiceField(required=False, label="Through", choices=_any(Via.choices))
    outcome = forms.ChoiceField(required=False, choices=_any(AuditEvent.Outcome.choices))
    since = forms.DateField(required=False, label="From",
                            widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="Until",
                            widget=forms.DateInput(attrs={"type": "date"}))


class QuotaForm(forms.Form):
    """A namespace's limits, one field per kind of quota (cloudstate.quotas):
    empty means no limit."""

    def __init__(self, *args: Any, limits: dict[str, int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, kind in quotas.KINDS.items():
            unit = "a size such as 20G or 512M" if kind.unit == quotas.BYTES else \
                (f"{kind.unit}" if kind.unit else "how many")
            self.fields[name] = forms.CharField(
                label=kind.label, required=False, max_length=40,
                initial=quotas.as_input(name, limits[name]) if name in limits else "",
                help_text=f"{unit}; empty for no limit")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for name in quotas.KINDS:
            if name in self.errors:
                continue
            try:
                cleaned[name] = quotas.parse_amount(name, cleaned.get(name, ""))
            except ValueError as exc:
                self.add_error(name, sentence(str(exc)))
        return cleaned
