"""The admin pages' forms."""

from __future__ import annotations

from typing import Any

from django import forms

from cloudstate.vocabulary import ObjectKind
from portal.accounts.models import AuditAction, AuditEvent, Role, Via
from portal.manage.common import ROLE_CHOICES


class NamespaceForm(forms.Form):
    name = forms.CharField(max_length=63, help_text="Lowercase letters, digits, - and _.")


class KeyForm(forms.Form):
    key_name = forms.CharField(label="Key name", max_length=63,
                               help_text="e.g. ci or backup; the secret is generated for you.")


class TrustForm(forms.Form):
    external_namespace = forms.CharField(
        label="Namespace to trust", max_length=63,
        help_text="Its members and keys may then see this namespace (and not change it).")


class MemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial=Role.MEMBER)


class UserForm(forms.Form):
    username = forms.CharField(max_length=150)
    password = forms.CharField(widget=forms.PasswordInput(render_value=False), required=False,
                               help_text="Leave empty to generate one (shown once).")
    namespace = forms.ChoiceField(required=False, label="Namespace",
                                  help_text="Optional: make them a member of one now.")
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial=Role.MEMBER)

    def __init__(self, *args: Any, namespaces: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["namespace"].choices = [("", "(none)")] + [(n, n) for n in namespaces]


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
