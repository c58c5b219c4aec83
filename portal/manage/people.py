"""The people admin pages (system admins only): the list (and adding a
person), one person with their memberships, resetting a password,
disabling, enabling and deleting an account. Refusals show beside the form
field they are about; disabling and deleting ask first (in a dialog)."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from portal.accounts import people
from portal.accounts.models import Membership, Namespace
from portal.cloud.errors import CloudError
from portal.formerrors import add_refusal
from portal.manage.common import ROLE_CHOICES, http, system_admin
from portal.manage.forms import MembershipForm, ResetPasswordForm, UserForm
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
            add_refusal(form, exc, {"password": "password", "namespace": "namespace",
                                    "role": "role"}, default="username")
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


async def _user_page(request: HttpRequest, user: Any, *, status: int = 200,
                     password_form: ResetPasswordForm | None = None,
                     membership_form: MembershipForm | None = None,
                     row_error: tuple[str, str] | None = None, **extra: Any) -> HttpResponse:
    memberships = [m async for m in Membership.objects.filter(user=user)
                   .select_related("namespace").order_by("namespace__name")]
    taken = {m.namespace.name for m in memberships}
    free = [n for n in await _namespace_names() if n not in taken]
    viewer = await request.auser()  # type: ignore[attr-defined]
    return await arender(request, "manage/user.html", {
        "person": user, "memberships": memberships, "role_choices": ROLE_CHOICES,
        "free_namespaces": free,
        "password_form": password_form or ResetPasswordForm(username=user.get_username()),
        "membership_form": membership_form or MembershipForm(namespaces=free),
        "row_error": row_error, "is_self": user.pk == viewer.pk,
        "tab": "people", **extra,
    }, status=status)


async def _person(request: HttpRequest, user_id: int) -> tuple[Any, Any]:
    """(the Actor, the account) for a system admin; 404 for a missing one."""
    access, actor = await system_admin(request)
    try:
        return actor, await sync_to_async(people.get_user)(access, user_id)
    except CloudError as exc:
        http(exc)
        raise


@login_required
@require_POST
async def user_active(request: HttpRequest, user_id: int) -> HttpResponse:
    actor, user = await _person(request, user_id)
    active = request.POST.get("active") == "1"
    try:
        await sync_to_async(people.set_active)(actor, user_id, active)
    except CloudError as exc:
        http(exc)
        return await _user_page(request, user, status=400, account_error=exc.message)
    messages.success(request, f"{user.get_username()} can log in again." if active else
                     f"{user.get_username()} is disabled: their sessions, tokens, pages and "
                     "consoles no longer work.")
    return HttpResponseRedirect(reverse("user-admin", args=[user_id]))


@login_required
@require_POST
async def user_delete(request: HttpRequest, user_id: int) -> HttpResponse:
    actor, user = await _person(request, user_id)
    try:
        name = await sync_to_async(people.delete_user)(actor, user_id)
    except CloudError as exc:
        http(exc)
        return await _user_page(request, user, status=400, account_error=exc.message)
    messages.success(request, f"{name} is deleted. The audit trail keeps what they did, "
                              "under their name.")
    return HttpResponseRedirect(reverse("user-admin-list"))


@sensitive_post_parameters("password")
@login_required
@require_POST
async def user_password(request: HttpRequest, user_id: int) -> HttpResponse:
    actor, user = await _person(request, user_id)
    form = ResetPasswordForm(request.POST, username=user.get_username())
    if form.is_valid():
        given = form.cleaned_data["password"] or None
        try:
            password = await sync_to_async(people.reset_password)(actor, user_id, given)
        except CloudError as exc:
            http(exc)
            add_refusal(form, exc, default="password")
        else:
            if given:
                messages.success(request, "The password is changed; their sessions have ended.")
                return HttpResponseRedirect(reverse("user-admin", args=[user_id]))
            return await _user_page(request, user, new_password=password)
    return await _user_page(request, user, status=400, password_form=form)


@login_required
@require_POST
async def user_membership(request: HttpRequest, user_id: int) -> HttpResponse:
    """A role in a namespace: a row's new role (``row`` names the namespace)
    or the person added to one."""
    actor, user = await _person(request, user_id)
    row = request.POST.get("row") or None
    taken = {n async for n in Membership.objects.filter(user=user)
             .values_list("namespace__name", flat=True)}
    names = await _namespace_names()
    form = MembershipForm(request.POST, namespaces=names if row else
                          [n for n in names if n not in taken])
    if form.is_valid():
        namespace, role = form.cleaned_data["namespace"], form.cleaned_data["role"]
        try:
            await sync_to_async(people.set_membership)(actor, namespace, user.get_username(),
                                                       role)
        except CloudError as exc:
            http(exc)
            if row:
                return await _user_page(request, user, status=400,
                                        row_error=(row, exc.message))
            add_refusal(form, exc, default="namespace")
        else:
            messages.success(request, f"{user.get_username()} is now {role} of {namespace}.")
            return HttpResponseRedirect(reverse("user-admin", args=[user_id]))
    if row:
        return await _user_page(request, user, status=400, row_error=(row, "; ".join(
            str(e) for errors in form.errors.values() for e in errors)))
    return await _user_page(request, user, status=400, membership_form=form)


@login_required
@require_POST
async def user_membership_remove(request: HttpRequest, user_id: int,
                                 namespace: str) -> HttpResponse:
    actor, user = await _person(request, user_id)
    try:
        await sync_to_async(people.remove_membership)(actor, namespace, user_id)
    except CloudError as exc:
        http(exc)
        return await _user_page(request, user, status=400, row_error=(namespace, exc.message))
    messages.success(request, f"Removed from {namespace}.")
    return HttpResponseRedirect(reverse("user-admin", args=[user_id]))
