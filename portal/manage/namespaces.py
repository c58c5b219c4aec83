"""The namespaces admin pages: the list (and creating one), a namespace with
its members, keys and the namespaces it trusts, deleting one."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from cloudstate.validation import ValidationError
from portal.accounts import keys, people
from portal.accounts import namespaces as service
from portal.accounts.access import Access, actor_for
from portal.accounts.models import ApiKey, Namespace
from portal.cloud import ownership, quotas
from portal.cloud.errors import CloudError
from portal.formerrors import add_refusal, message_of
from portal.live.hub import hub
from portal.manage.common import ROLE_CHOICES, act, admin_of, http, manager
from portal.manage.forms import KeyForm, MemberForm, NamespaceForm, QuotaForm, TrustForm
from portal.web import arender


@login_required
@require_GET
async def manage_home(request: HttpRequest) -> HttpResponse:
    await manager(request)
    return HttpResponseRedirect(reverse("namespace-admin-list"))


@login_required
@require_http_methods(["GET", "POST"])
async def namespace_list(request: HttpRequest) -> HttpResponse:
    access = await manager(request)
    form = NamespaceForm(request.POST or None)
    if request.method == "POST":
        if not access.is_system_admin:
            raise PermissionDenied("Only admins of the system namespace may create namespaces.")
        if form.is_valid():
            try:
                created = await service.create_namespace(access.actor(request),
                                                         form.cleaned_data["name"])
            except (CloudError, ValidationError) as exc:
                add_refusal(form, exc, default="name")
            else:
                messages.success(request, f"Namespace {created.name} is created.")
                return HttpResponseRedirect(reverse("namespace-admin", args=[created.name]))
    queryset = Namespace.objects.annotate(
        member_count=Count("memberships", distinct=True), key_count=Count("keys", distinct=True))
    if access.administered is not None:
        queryset = queryset.filter(name__in=access.administered)
    rows = [ns async for ns in queryset]
    return await arender(request, "manage/namespaces.html", {
        "rows": rows, "form": form, "can_create": access.is_system_admin, "tab": "namespaces",
    }, status=400 if form.errors else 200)


async def _namespace_page(request: HttpRequest, access: Access, namespace: Namespace,
                          **extra: Any) -> HttpResponse:
    key_form = extra.pop("key_form", None) or KeyForm()
    member_form = extra.pop("member_form", None) or MemberForm()
    status = extra.pop("status", 200)
    live = await hub()
    quota_lines = quotas.from_mirror(live.mirror, live.keys, namespace.name)
    quota_form = extra.pop("quota_form", None)
    if quota_form is None and access.is_system_admin:
        quota_form = QuotaForm(limits={line.name: line.limit for line in quota_lines
                                       if line.limit is not None})
    owned = await ownership.owned_by(namespace.name)
    key_rows = [k async for k in ApiKey.objects.filter(namespace=namespace)]
    members = await sync_to_async(people.members)(access, namespace.name)
    return await arender(request, "manage/namespace.html", {
        "namespace": namespace, "owned": owned, "owned_text": ownership.describe(owned),
        "keys": key_rows, "members": members, "member_form": member_form,
        "key_form": key_form, "role_choices": ROLE_CHOICES,
        "trusted": service.trusted_names(namespace)[1:],
        "trust_form": extra.pop("trust_form", None) or TrustForm(),
        "can_delete": access.is_system_admin and not namespace.is_system,
        "api_url": request.build_absolute_uri("/api"), "tab": "namespaces",
        "quota_lines": quota_lines, "quota_form": quota_form, **extra,
    }, status=status)


@login_required
@require_GET
async def namespace_detail(request: HttpRequest, namespace: str) -> HttpResponse:
    access, found = await admin_of(request, namespace)
    return await _namespace_page(request, access, found)


@login_required
@require_POST
async def namespace_delete(request: HttpRequest, namespace: str) -> HttpResponse:
    _, actor = await actor_for(request)
    try:
        await service.delete_namespace(actor, namespace)
    except CloudError as exc:
        http(exc)
        messages.error(request, exc.message)
        return HttpResponseRedirect(reverse("namespace-admin", args=[namespace]))
    messages.success(request, f"Namespace {namespace} is deleted.")
    return HttpResponseRedirect(reverse("namespace-admin-list"))


@login_required
@require_POST
async def namespace_quota(request: HttpRequest, namespace: str) -> HttpResponse:
    """A system admin sets the namespace's limits (every kind at once: an
    empty field is no limit); a refusal shows beside its field, with what
    was typed kept."""
    access, found = await admin_of(request, namespace)
    if not access.is_system_admin:
        raise PermissionDenied("Only admins of the system namespace may set quotas.")
    form = QuotaForm(request.POST, limits={})
    if form.is_valid():
        try:
            await quotas.set_limits(access.actor(request), namespace,
                                    {name: form.cleaned_data[name] for name in form.fields})
        except CloudError as exc:
            http(exc)
            add_refusal(form, exc)
        else:
            messages.success(request, f"The quotas of {namespace} are set.")
            return HttpResponseRedirect(reverse("namespace-admin", args=[namespace]) + "#quota-h")
    return await _namespace_page(request, access, found, quota_form=form, status=400)


@login_required
@require_POST
async def namespace_key_create(request: HttpRequest, namespace: str) -> HttpResponse:
    access, found = await admin_of(request, namespace)
    form = KeyForm(request.POST)
    if form.is_valid():
        secret = keys.generate_secret()
        try:
            key = await service.set_key(access.actor(request), namespace,
                                        form.cleaned_data["key_name"], secret, new=True)
        except ValidationError as exc:
            add_refusal(form, exc, default="key_name")
        except CloudError as exc:
            http(exc)
            add_refusal(form, exc, default="key_name")
        else:
            return await _namespace_page(request, access, found, new_key=key.name,
                                         new_secret=secret)
    return await _namespace_page(request, access, found, key_form=form, status=400)


@login_required
@require_POST
async def namespace_key_rotate(request: HttpRequest, namespace: str,
                               key_name: str) -> HttpResponse:
    access, found = await admin_of(request, namespace)
    secret = keys.generate_secret()
    try:
        key = await service.set_key(access.actor(request), namespace, key_name, secret,
                                    new=False)
    except CloudError as exc:
        http(exc)
        raise
    return await _namespace_page(request, access, found, new_key=key.name, new_secret=secret,
                                 rotated=True)


@login_required
@require_POST
async def namespace_key_delete(request: HttpRequest, namespace: str,
                               key_name: str) -> HttpResponse:
    _, actor = await actor_for(request)
    return await act(
        request, reverse("namespace-admin", args=[namespace]),
        f"Key {key_name} is deleted; tokens issued from it no longer work.",
        lambda: service.delete_key(actor, namespace, key_name))


@login_required
@require_POST
async def namespace_trust_add(request: HttpRequest, namespace: str) -> HttpResponse:
    access, found = await admin_of(request, namespace)
    form = TrustForm(request.POST)
    if form.is_valid():
        other = form.cleaned_data["external_namespace"]
        try:
            await service.add_trust(access.actor(request), namespace, other)
        except CloudError as exc:
            if exc.status in (401, 403):
                http(exc)
            add_refusal(form, exc, default="external_namespace")
        else:
            messages.success(request, f"Namespace {other} may now see {namespace}.")
            return HttpResponseRedirect(reverse("namespace-admin", args=[namespace]))
    return await _namespace_page(request, access, found, trust_form=form, status=400)


@login_required
@require_POST
async def namespace_trust_remove(request: HttpRequest, namespace: str,
                                 other: str) -> HttpResponse:
    _, actor = await actor_for(request)
    return await act(
        request, reverse("namespace-admin", args=[namespace]),
        f"Namespace {other} no longer sees {namespace}.",
        lambda: service.remove_trust(actor, namespace, other))


async def _members_section(request: HttpRequest, access: Access, namespace: Namespace, *,
                           form: MemberForm | None = None,
                           row_error: tuple[int, str] | None = None) -> HttpResponse:
    """The members table after a change: with htmx, the table alone (swapped
    in place); without, the namespace's whole page. A refused change shows
    beside what was changed: the row's role, or the add form's field."""
    failed = row_error is not None or (form is not None and bool(form.errors))
    if not request.htmx:  # type: ignore[attr-defined]
        if not failed:
            return HttpResponseRedirect(reverse("namespace-admin", args=[namespace.name]))
        return await _namespace_page(request, access, namespace, member_form=form,
                                     row_error=row_error, status=400)
    members = await sync_to_async(people.members)(access, namespace.name)
    return await arender(request, "manage/_members.html", {
        "namespace": namespace, "members": members,
        "member_form": form if failed and form is not None else MemberForm(),
        "role_choices": ROLE_CHOICES, "row_error": row_error,
    }, status=400 if failed else 200)


@login_required
@require_http_methods(["GET", "POST"])
async def namespace_members(request: HttpRequest, namespace: str) -> HttpResponse:
    """The members table: an htmx partial, also the target of its forms
    (adding someone, or changing a row's role: those carry ``row``)."""
    access, found = await admin_of(request, namespace)
    if request.method != "POST":
        return await _members_section(request, access, found)
    form = MemberForm(request.POST)
    row = request.POST.get("row", "")
    if form.is_valid():
        try:
            await sync_to_async(people.set_membership)(
                access.actor(request), namespace, form.cleaned_data["username"],
                form.cleaned_data["role"])
        except CloudError as exc:
            _http_unless_member_missing(exc)
            if row.isdigit():
                return await _members_section(request, access, found,
                                              row_error=(int(row), message_of(exc)))
            add_refusal(form, exc, {"role": "role"}, default="username")
    elif row.isdigit():
        return await _members_section(request, access, found, row_error=(
            int(row), " ".join(str(e) for errors in form.errors.values() for e in errors)))
    return await _members_section(request, access, found, form=form)


def _http_unless_member_missing(exc: CloudError) -> None:
    # "No such user" is a form error, not a missing page.
    if exc.status == 404 and "no user named" in exc.message:
        return
    http(exc)


@login_required
@require_POST
async def namespace_member_remove(request: HttpRequest, namespace: str,
                                  user_id: int) -> HttpResponse:
    access, found = await admin_of(request, namespace)
    try:
        await sync_to_async(people.remove_membership)(access.actor(request), namespace, user_id)
    except CloudError as exc:
        http(exc)
        return await _members_section(request, access, found,
                                      row_error=(user_id, message_of(exc)))
    return await _members_section(request, access, found)
