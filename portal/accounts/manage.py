"""The admin pages: namespaces (members, keys, deletion), people, and the
audit trail.

System admins manage everything. An admin of a namespace manages that
namespace's members and keys, and reads its audit trail. A namespace the
person can't see answers 404; one they can see but not manage, 403.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, time
from typing import Any

from asgiref.sync import sync_to_async
from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from portal.accounts import audit, keys, people
from portal.accounts import namespaces as service
from portal.accounts.access import Access, access_for
from portal.accounts.models import ApiKey, AuditEvent, Membership, Namespace, Role
from portal.cloud import ownership
from portal.cloud.errors import CloudError
from portal.web import arender

ROLE_CHOICES = [(r.value, r.label) for r in Role]


def _http(exc: CloudError) -> None:
    """Not found and forbidden become the pages' 404 and 403."""
    if exc.status == 404:
        raise Http404(exc.message)
    if exc.status == 403:
        raise PermissionDenied(exc.message)


async def _manager(request: HttpRequest) -> Access:
    access = await access_for(request)
    if access.administered is not None and not access.administered:
        raise PermissionDenied("Only admins of a namespace may use the admin pages.")
    return access


async def _admin_of(request: HttpRequest, namespace: str) -> tuple[Access, Namespace]:
    access = await access_for(request)
    try:
        found = await service.get_namespace(access, namespace)
        access.require_admin(namespace, f"namespace {namespace}")
    except CloudError as exc:
        _http(exc)
        raise
    return access, found


async def _system_admin(request: HttpRequest) -> Access:
    access = await access_for(request)
    if not access.is_system_admin:
        raise PermissionDenied("Only admins of the system namespace may manage people.")
    return access


async def _act(request: HttpRequest, back: str, success: str,
               action: Callable[[], Awaitable[Any]]) -> HttpResponse:
    """Run a change; 404/403 as such, other refusals as a message."""
    try:
        await action()
    except CloudError as exc:
        _http(exc)
        messages.error(request, exc.message)
    else:
        messages.success(request, success)
    return HttpResponseRedirect(back)


# --- namespaces --------------------------------------------------------------------------------


class NamespaceForm(forms.Form):
    name = forms.CharField(max_length=63, help_text="Lowercase letters, digits, - and _.")


class KeyForm(forms.Form):
    key_name = forms.CharField(label="Key name", max_length=63,
                               help_text="e.g. ci or backup; the secret is generated for you.")


class MemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial=Role.MEMBER)


@login_required
@require_GET
async def manage_home(request: HttpRequest) -> HttpResponse:
    await _manager(request)
    return HttpResponseRedirect(reverse("namespace-admin-list"))


@login_required
@require_http_methods(["GET", "POST"])
async def namespace_list(request: HttpRequest) -> HttpResponse:
    access = await _manager(request)
    form = NamespaceForm(request.POST or None)
    if request.method == "POST":
        if not access.is_system_admin:
            raise PermissionDenied("Only admins of the system namespace may create namespaces.")
        if form.is_valid():
            try:
                created = await service.create_namespace(access, form.cleaned_data["name"],
                                                         source=audit.source_of(request))
            except CloudError as exc:
                form.add_error("name", exc.message)
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
    status = extra.pop("status", 200)
    owned = await ownership.owned_by(namespace.name)
    key_rows = [k async for k in ApiKey.objects.filter(namespace=namespace)]
    members = await sync_to_async(people.members)(access, namespace.name)
    return await arender(request, "manage/namespace.html", {
        "namespace": namespace, "owned": owned, "owned_text": ownership.describe(owned),
        "keys": key_rows, "members": members, "member_form": MemberForm(),
        "key_form": key_form, "role_choices": ROLE_CHOICES,
        "can_delete": access.is_system_admin and not namespace.is_system,
        "api_url": request.build_absolute_uri("/api"), "tab": "namespaces", **extra,
    }, status=status)


@login_required
@require_GET
async def namespace_detail(request: HttpRequest, namespace: str) -> HttpResponse:
    access, found = await _admin_of(request, namespace)
    return await _namespace_page(request, access, found)


@login_required
@require_POST
async def namespace_delete(request: HttpRequest, namespace: str) -> HttpResponse:
    access = await access_for(request)
    back = reverse("namespace-admin", args=[namespace])
    try:
        await service.delete_namespace(access, namespace, source=audit.source_of(request))
    except CloudError as exc:
        _http(exc)
        messages.error(request, exc.message)
        return HttpResponseRedirect(back)
    messages.success(request, f"Namespace {namespace} is deleted.")
    return HttpResponseRedirect(reverse("namespace-admin-list"))


@login_required
@require_POST
async def namespace_key_create(request: HttpRequest, namespace: str) -> HttpResponse:
    access, found = await _admin_of(request, namespace)
    form = KeyForm(request.POST)
    if form.is_valid():
        secret = keys.generate_secret()
        try:
            key, _ = await service.set_key(access, namespace, form.cleaned_data["key_name"],
                                           secret, source=audit.source_of(request),
                                           must_be_new=True)
        except CloudError as exc:
            _http(exc)
            form.add_error("key_name", exc.message)
        else:
            return await _namespace_page(request, access, found, new_key=key.name,
                                         new_secret=secret)
    return await _namespace_page(request, access, found, key_form=form, status=400)


@login_required
@require_POST
async def namespace_key_rotate(request: HttpRequest, namespace: str,
                               key_name: str) -> HttpResponse:
    access, found = await _admin_of(request, namespace)
    secret = keys.generate_secret()
    try:
        key, _ = await service.set_key(access, namespace, key_name, secret,
                                       source=audit.source_of(request), must_exist=True)
    except CloudError as exc:
        _http(exc)
        raise
    return await _namespace_page(request, access, found, new_key=key.name, new_secret=secret,
                                 rotated=True)


@login_required
@require_POST
async def namespace_key_delete(request: HttpRequest, namespace: str,
                               key_name: str) -> HttpResponse:
    access = await access_for(request)
    return await _act(
        request, reverse("namespace-admin", args=[namespace]),
        f"Key {key_name} is deleted; tokens issued from it no longer work.",
        lambda: service.delete_key(access, namespace, key_name,
                                   source=audit.source_of(request)))


@login_required
@require_http_methods(["GET", "POST"])
async def namespace_members(request: HttpRequest, namespace: str) -> HttpResponse:
    """The members table: an htmx partial, also the target of its forms."""
    access, found = await _admin_of(request, namespace)
    error = None
    if request.method == "POST":
        form = MemberForm(request.POST)
        if form.is_valid():
            try:
                await sync_to_async(people.set_membership)(
                    access, namespace, form.cleaned_data["username"], form.cleaned_data["role"],
                    source=audit.source_of(request))
            except CloudError as exc:
                _http_unless_member_missing(exc)
                error = exc.message
        else:
            error = "; ".join(f"{field}: {' '.join(errs)}" for field, errs in form.errors.items())
        if not request.htmx:
            if error:
                messages.error(request, error)
            return HttpResponseRedirect(reverse("namespace-admin", args=[namespace]))
    members = await sync_to_async(people.members)(access, namespace)
    return await arender(request, "manage/_members.html", {
        "namespace": found, "members": members, "member_form": MemberForm(),
        "role_choices": ROLE_CHOICES, "error": error,
    }, status=400 if error else 200)


def _http_unless_member_missing(exc: CloudError) -> None:
    # "No such user" is a form error, not a missing page.
    if exc.status == 404 and "no user named" in exc.message:
        return
    _http(exc)


@login_required
@require_POST
async def namespace_member_remove(request: HttpRequest, namespace: str,
                                  user_id: int) -> HttpResponse:
    access, found = await _admin_of(request, namespace)
    error = None
    try:
        await sync_to_async(people.remove_membership)(access, namespace, user_id,
                                                      source=audit.source_of(request))
    except CloudError as exc:
        _http(exc)
        error = exc.message
    if not request.htmx:
        if error:
            messages.error(request, error)
        return HttpResponseRedirect(reverse("namespace-admin", args=[namespace]))
    members = await sync_to_async(people.members)(access, namespace)
    return await arender(request, "manage/_members.html", {
        "namespace": found, "members": members, "member_form": MemberForm(),
        "role_choices": ROLE_CHOICES, "error": error,
    }, status=400 if error else 200)


# --- people ----------------------------------------------------------------------------------


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


async def _namespace_names() -> list[str]:
    return [n async for n in Namespace.objects.values_list("name", flat=True)]


@sensitive_post_parameters("password")
@login_required
@require_http_methods(["GET", "POST"])
async def user_list(request: HttpRequest) -> HttpResponse:
    access = await _system_admin(request)
    names = await _namespace_names()
    form = UserForm(request.POST or None, namespaces=names)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        password = data["password"] or people.generate_password()
        try:
            user = await sync_to_async(people.create_user)(
                access, data["username"], password, namespace=data["namespace"] or None,
                role=data["role"], source=audit.source_of(request))
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
    access = await _system_admin(request)
    try:
        user = await sync_to_async(people.get_user)(access, user_id)
    except CloudError as exc:
        _http(exc)
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
    access = await _system_admin(request)
    active = request.POST.get("active") == "1"
    return await _act(
        request, reverse("user-admin", args=[user_id]),
        "The account is enabled." if active else
        "The account is disabled: its sessions, tokens and websockets no longer work.",
        lambda: sync_to_async(people.set_active)(access, user_id, active,
                                                 source=audit.source_of(request)))


@sensitive_post_parameters("password")
@login_required
@require_POST
async def user_password(request: HttpRequest, user_id: int) -> HttpResponse:
    access = await _system_admin(request)
    given = request.POST.get("password") or None
    try:
        password = await sync_to_async(people.reset_password)(
            access, user_id, given, source=audit.source_of(request))
    except CloudError as exc:
        _http(exc)
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
    access = await _system_admin(request)
    user = await get_user_model().objects.filter(pk=user_id).afirst()
    if user is None:
        raise Http404("No such user")
    namespace = request.POST.get("namespace", "")
    role = request.POST.get("role", "")
    return await _act(
        request, reverse("user-admin", args=[user_id]),
        f"{user.get_username()} is now {role} of {namespace}.",
        lambda: sync_to_async(people.set_membership)(access, namespace, user.get_username(),
                                                     role, source=audit.source_of(request)))


@login_required
@require_POST
async def user_membership_remove(request: HttpRequest, user_id: int,
                                 namespace: str) -> HttpResponse:
    access = await _system_admin(request)
    return await _act(
        request, reverse("user-admin", args=[user_id]), f"Removed from {namespace}.",
        lambda: sync_to_async(people.remove_membership)(access, namespace, user_id,
                                                        source=audit.source_of(request)))


# --- audit trail -----------------------------------------------------------------------------


class AuditFilter(forms.Form):
    actor = forms.CharField(required=False)
    namespace = forms.CharField(required=False)
    action = forms.CharField(required=False)
    object = forms.CharField(required=False, label="Object",
                             help_text="A kind (instance), a name or a UUID.")
    outcome = forms.ChoiceField(required=False,
                                choices=[("", "any")] + list(AuditEvent.Outcome.choices))
    since = forms.DateField(required=False, label="From",
                            widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="Until",
                            widget=forms.DateInput(attrs={"type": "date"}))


PAGE_SIZE = 50


def filter_events(access: Access, data: dict[str, Any]) -> Any:
    events = AuditEvent.objects.all()
    if access.administered is not None:
        events = events.filter(namespace__in=access.administered)
    if data.get("actor"):
        events = events.filter(actor__icontains=data["actor"])
    if data.get("namespace"):
        events = events.filter(namespace=data["namespace"])
    if data.get("action"):
        events = events.filter(action=data["action"])
    if data.get("object"):
        term = data["object"]
        events = events.filter(Q(object_kind=term) | Q(object_id=term)
                               | Q(object_name__icontains=term))
    if data.get("outcome"):
        events = events.filter(outcome=data["outcome"])
    tz = timezone.get_current_timezone()
    if data.get("since"):
        events = events.filter(when__gte=datetime.combine(data["since"], time.min, tz))
    if data.get("until"):
        events = events.filter(when__lte=datetime.combine(data["until"], time.max, tz))
    return events


@login_required
@require_GET
async def audit_list(request: HttpRequest) -> HttpResponse:
    access = await _manager(request)
    form = AuditFilter(request.GET or None)
    data = form.cleaned_data if form.is_valid() else {}

    @sync_to_async
    def page() -> Any:
        paginator = Paginator(filter_events(access, data), PAGE_SIZE)
        found = paginator.get_page(request.GET.get("page"))
        found.object_list = list(found.object_list)
        return found

    query = request.GET.copy()
    query.pop("page", None)
    return await arender(request, "manage/audit.html", {
        "form": form, "page": await page(), "query": query.urlencode(), "tab": "audit",
    }, status=400 if form.errors else 200)
