"""A person's own pages: choosing the namespace to work in, their personal
API tokens, and their password."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from cloudstate.validation import ValidationError
from portal.accounts import people
from portal.accounts.access import (
    ALL_NAMESPACES,
    SESSION_KEY,
    access_for,
    actor_for,
    namespace_choices,
    resolve_current,
)
from portal.accounts.actor import Actor, address_of
from portal.accounts.login import ThrottledPasswordChangeForm
from portal.accounts.models import PersonalToken
from portal.cloud.errors import CloudError, NotFound
from portal.formerrors import add_refusal
from portal.web import arender

EXPIRY_CHOICES = [(7, "7 days"), (30, "30 days"), (90, "90 days"), (365, "1 year")]


@login_required
@require_POST
async def switch_namespace(request: HttpRequest) -> HttpResponse:
    access = await access_for(request)
    wanted = request.POST.get("namespace", "")
    choices = await namespace_choices(access.memberships)
    current, everything = resolve_current(wanted, access.memberships, choices)
    if everything or current == wanted:
        await request.session.aset(SESSION_KEY, ALL_NAMESPACES if everything else wanted)
    target = request.POST.get("next") or reverse("home")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = reverse("home")
    return HttpResponseRedirect(target)


class TokenForm(forms.Form):
    name = forms.CharField(max_length=63, help_text="What the token is for, e.g. laptop or CI.")
    days = forms.TypedChoiceField(label="Expires after", coerce=int, choices=EXPIRY_CHOICES,
                                  initial=30)
    namespace = forms.ChoiceField(
        label="Default namespace", required=False,
        help_text="Where requests act when they name no namespace.")

    def __init__(self, *args: Any, namespaces: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limit = settings.PERSONAL_TOKEN_MAX_DAYS
        self.fields["days"].choices = [c for c in EXPIRY_CHOICES if c[0] <= limit] or \
            [(limit, f"{limit} days")]
        self.fields["namespace"].choices = [(ns, ns) for ns in namespaces]


@login_required
@require_http_methods(["GET", "POST"])
async def token_list(request: HttpRequest) -> HttpResponse:
    access, actor = await actor_for(request)
    user = await request.auser()
    form = TokenForm(request.POST or None, namespaces=sorted(access.memberships))
    secret = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            token, secret = await sync_to_async(people.create_token)(
                actor, data["name"], data["days"], data.get("namespace") or "")
        except (CloudError, ValidationError) as exc:
            add_refusal(form, exc, {"expiry": "days"}, default="name")
        else:
            form = TokenForm(namespaces=sorted(access.memberships))
    tokens = [t async for t in PersonalToken.objects.filter(user=user)]
    return await arender(request, "accounts/tokens.html", {
        "form": form, "tokens": tokens, "secret": secret,
        "api_url": request.build_absolute_uri("/api"),
    }, status=400 if form.errors else 200)


@login_required
@require_POST
async def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    _, actor = await actor_for(request)
    try:
        await sync_to_async(people.revoke_token)(actor, token_id)
    except NotFound:
        raise Http404("No such token") from None
    messages.success(request, "The token is revoked: it no longer works.")
    return HttpResponseRedirect(reverse("token-list"))


@sensitive_post_parameters("old_password", "new_password1", "new_password2")
@login_required
@require_http_methods(["GET", "POST"])
def password_change(request: HttpRequest) -> HttpResponse:
    form = ThrottledPasswordChangeForm(request, request.POST or None)
    if request.method == "POST" and form.is_valid():
        actor = Actor.own_account(request.user, address_of(request))
        user = people.change_own_password(actor, form)
        update_session_auth_hash(request, user)
        messages.success(request, "Your password is changed.")
        return HttpResponseRedirect(reverse("password-change"))
    status = 429 if form.throttled else 400 if form.errors else 200
    return render(request, "accounts/password.html", {"form": form}, status=status)
