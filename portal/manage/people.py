"""The people admin pages (system admins only): the list (and adding a
person), one person with their memberships, enabling, disabling and
resetting a password."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from portal.accounts import people
from portal.accounts.models import Membership, Namespace
from portal.cloud.errors import CloudError
from portal.manage.common import ROLE_CHOICES, act, http, system_admin
from portal.manage.forms import UserForm
from portal.web import arender


async def _namespace_names() -> list[str]:
    return [n async for n in Namespace.objects.values_list("name", flat=True)]


@sensitive_post_parameters("password")
@login_required
@require_http_methods(["GET", "POST"])
async def user_list(request: HttpRequest) -> HttpResponse:
    _, actor = await system_admin(request)
    names = await _namespace_names()
    form = UserForm(request.POST or None, namespaces=names)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        password = data["password"] or people.generate_password()
        try:
            user = await sync_to_async(people.create_user)(
                actor, data["username"], password, namespace=data["namespace"] or None,
                role=data["role"])
        except CloudError as exc:
            form.add_error(None, exc.message)
        else:
            if not data["password"]:
                # Shown in this response only: never in a message, cookie or session.
                return await _user_page(request, user, new_password=password)
            messages.success(request, f"{user.get_username()} can now log in.")
            return HttpResponseRedirect(reverse("user-admin", args=[user.pk]))
    users = [u async for u in get_user_model().objects.order_by("username")
             .prefetch_related("memberships__namespace")]
    return await arender(request, "manage/users.html", {
        "users": users, "form": form, "tab": "people",
    }, status=400 if form.errors else 200)


@login_required
@require_GET
async def user_detail(request: HttpRequest, user_id: int) -> HttpResponse:
    access, _ = await system_admin(request)
    try:
        user = await sync_to_async(people.get_user)(access, user_id)
    except CloudError as exc:
        http(exc)
        raise
    return await _user_page(request, user)


async def _user_page(request: HttpRequest, user: Any, **extra: Any) -> HttpResponse:
    memberships = [m async for m in Membership.objects.filter(user=user)
                   .select_related("namespace").order_by("namespace__name")]
    taken = {m.namespace.name for m in memberships}
    return await arender(request, "manage/user.html", {
        "person": user, "memberships": memberships, "role_choices": ROLE_CHOICES,
        "free_namespaces": [n for n in await _namespace_names() if n not in taken],
        "tab": "people", **extra,
    })


@login_required
@require_POST
async def user_active(request: HttpRequest, user_id: int) -> HttpResponse:
    _, actor = await system_admin(request)
    active = request.POST.get("active") == "1"
    return await act(
        request, reverse("user-admin", args=[user_id]),
        "The account is enabled." if active else
        "The account is disabled: its sessions, tokens and websockets no longer work.",
        lambda: sync_to_async(people.set_active)(actor, user_id, active))


@sensitive_post_parameters("password")
@login_required
@require_POST
async def user_password(request: HttpRequest, user_id: int) -> HttpResponse:
    _, actor = await system_admin(request)
    given = request.POST.get("password") or None
    try:
        password = await sync_to_async(people.reset_password)(actor, user_id, given)
    except CloudError as exc:
        http(exc)
        messages.error(request, exc.message)
        return HttpResponseRedirect(reverse("user-admin", args=[user_id]))
    if given:
        messages.success(request, "The password is changed; their sessions have ended.")
        return HttpResponseRedirect(reverse("user-admin", args=[user_id]))
    user = await get_user_model().objects.aget(pk=user_id)
    return await _user_page(request, user, new_password=password)


@login_required
@require_POST
async def user_membership(request: HttpRequest, user_id: int) -> HttpResponse:
    _, actor = await system_admin(request)
    user = await get_user_model().objects.filter(pk=user_id).afirst()
    if user is None:
        raise Http404("No such user")
    namespace = request.POST.get("namespace", "")
    role = request.POST.get("role", "")
    return await act(
        request, reverse("user-admin", args=[user_id]),
        f"{user.get_username()} is now {role} of {namespace}.",
        lambda: sync_to_async(people.set_membership)(actor, namespace, user.get_username(),
                                                     role))


@login_required
@require_POST
async def user_membership_remove(request: HttpRequest, user_id: int,
                                 namespace: str) -> HttpResponse:
    _, actor = await system_admin(request)
    return await act(
        request, reverse("user-admin", args=[user_id]), f"Removed from {namespace}.",
        lambda: sync_to_async(people.remove_membership)(actor, namespace, user_id))
