"""The security group pages: the namespace's groups and address sets, a
group with its rules (add, remove) and the interfaces that use it, an
address set's CIDRs. They call the services the API calls, so a refusal
reads the same in both; the lists and a group's page follow the cloud live
(portal.secgroups.consumers)."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from cloudstate import secgroups as rules_of
from cloudstate.validation import ValidationError
from portal.accounts.access import Access, access_for, actor_for
from portal.cloud import addresssets, instances, interfaces, networks, secgroups
from portal.cloud.errors import CloudError, Forbidden, NotFound
from portal.events.sections import events_context
from portal.formerrors import add_refusal, message_of, split_field
from portal.secgroups.forms import AddressSetForm, CidrsForm, GroupForm, RuleForm
from portal.web import arender, change_and_go

# --- what the pages show (also sent by their websockets) ------------------------------------------


async def list_context(access: Access) -> dict[str, Any]:
    if access.current is not None and access.can_read(access.current):
        await secgroups.ensure_default(access.current)
    records = await secgroups.list_groups(access.scope)
    users: Counter[str] = Counter(uuid for iface in await networks.all_interfaces()
                                  for uuid in iface.security_groups)
    return {"groups": [(record, users[record.uuid]) for record in records],
            "address_sets": await addresssets.list_sets(access.scope),
            "all_namespaces": access.all_namespaces}


async def detail_context(record: secgroups.GroupRecord) -> dict[str, Any]:
    namespace = frozenset({record.spec.namespace})
    groups = await secgroups.list_groups(namespace)
    sets = await addresssets.list_sets(namespace)
    names = {**secgroups.names_by_uuid(groups), **{s.uuid: s.spec.name for s in sets}}
    rules = [(rule, rules_of.describe(rule, names)) for rule in record.spec.rules]
    rows = []
    for view in await interfaces.views(await secgroups.interfaces_using(record.uuid)):
        try:
            name = (await instances.get(view["instance_uuid"], None)).spec.name
        except NotFound:
            name = view["instance_uuid"]
        rows.append((view, name))
    return {"record": record, "rules": rules, "interfaces": rows, "names": names}


# --- the list ------------------------------------------------------------------------------------


def _may_create(access: Access) -> bool:
    return access.current is not None and access.can_operate(access.current)


@login_required
@require_http_methods(["GET", "POST"])
async def group_list(request: HttpRequest) -> HttpResponse:
    access, actor = await actor_for(request)
    form = GroupForm(request.POST or None, prefix="group")
    if request.method == "POST":
        if not _may_create(access):
            raise PermissionDenied("Your role here does not let you create security groups.")
        if form.is_valid():
            assert access.current is not None
            try:
                record = await secgroups.create(actor, access.current, secgroups.GroupRequest(
                    name=form.cleaned_data["name"],
                    description=form.cleaned_data["description"]))
            except Forbidden as exc:
                raise PermissionDenied(exc.message) from None
            except (ValidationError, CloudError) as exc:
                add_refusal(form, exc, default="name")
            else:
                messages.success(request, f"Security group {record.spec.name} created: "
                                          "now add its rules.")
                return HttpResponseRedirect(reverse("secgroup-detail", args=[record.uuid]))
    return await arender(request, "secgroups/list.html", {
        **await list_context(access), "form": form, "set_form": AddressSetForm(prefix="set"),
        "can_operate": _may_create(access),
    }, status=400 if form.errors else 200)


@login_required
@require_POST
async def address_set_create(request: HttpRequest) -> HttpResponse:
    access, actor = await actor_for(request)
    if not _may_create(access):
        raise PermissionDenied("Your role here does not let you create address sets.")
    form = AddressSetForm(request.POST, prefix="set")
    if form.is_valid():
        assert access.current is not None
        try:
            record = await addresssets.create(actor, access.current, addresssets.AddressSetRequest(
                name=form.cleaned_data["name"], cidrs=form.cidr_list(),
                description=form.cleaned_data["description"]))
        except (ValidationError, CloudError) as exc:
            add_refusal(form, exc, default="name")
        else:
            messages.success(request, f"Address set {record.spec.name} created.")
            return HttpResponseRedirect(reverse("secgroup-list"))
    return await arender(request, "secgroups/list.html", {
        **await list_context(access), "form": GroupForm(prefix="group"), "set_form": form,
        "can_operate": True}, status=400)


# --- a group -------------------------------------------------------------------------------------


async def _group_for(request: HttpRequest, uuid: UUID) -> tuple[secgroups.GroupRecord, Access]:
    access = await access_for(request)
    try:
        return await secgroups.get(str(uuid), access.visible), access
    except NotFound:
        raise Http404("No such security group") from None


async def _rule_form(record: secgroups.GroupRecord, data: Any = None) -> RuleForm:
    """The add-rule form, offering the namespace's groups and address sets."""
    namespace = frozenset({record.spec.namespace})
    groups = [(g.uuid, g.spec.name) for g in await secgroups.list_groups(namespace)]
    sets = [(s.uuid, s.spec.name) for s in await addresssets.list_sets(namespace)]
    return RuleForm(data, groups=groups, address_sets=sets,
                    initial={"direction": "ingress", "remote": "any"})


async def _detail(request: HttpRequest, record: secgroups.GroupRecord, access: Access,
                  form: RuleForm | None = None, status: int = 200) -> HttpResponse:
    context = await detail_context(record)
    form = form or await _rule_form(record)
    return await arender(request, "secgroups/detail.html", {
        **context, "form": form,
        "can_operate": access.can_operate(record.spec.namespace),
        **await events_context(record.kind, record.uuid),
    }, status=status)


@login_required
async def group_detail(request: HttpRequest, uuid: UUID) -> HttpResponse:
    record, access = await _group_for(request, uuid)
    return await _detail(request, record, access)


@login_required
@require_POST
async def rule_add(request: HttpRequest, uuid: UUID) -> HttpResponse:
    record, access = await _group_for(request, uuid)
    form = await _rule_form(record, request.POST)
    if form.is_valid():
        try:
            await secgroups.add_rules(access.actor(request), record, [form.rule()])
        except Forbidden as exc:
            raise PermissionDenied(exc.message) from None
        except (ValidationError, CloudError) as exc:
            form.add_error(_rule_field(exc, form), message_of(exc))
        else:
            messages.success(request, "Rule added; the hypervisors apply it now.")
            return HttpResponseRedirect(reverse("secgroup-detail", args=[record.uuid]))
    return await _detail(request, record, access, form, status=400)


# The rule form's field for each part of a rule the service names ("rules[0].remote.cidrs").
_RULE_PARTS = {"remote.cidrs": "cidrs", "remote.group": "remote",
               "remote.address_set": "remote", "icmp_code": "icmp_type", "ethertype": "direction"}


def _rule_field(exc: ValidationError | CloudError, form: RuleForm) -> str:
    """The field of the rule form a refusal is about (the direction when it
    names none: a duplicate rule, a full group)."""
    named = exc.field if isinstance(exc, ValidationError) else split_field(exc.message)[0]
    part = re.sub(r"^rules?(\[\d+\])?\.", "", named or "")
    part = _RULE_PARTS.get(part, part)
    return part if part in form.fields else "direction"


def _toast(text: str, level: str) -> HttpResponse:
    response = HttpResponse(status=200)
    response["HX-Trigger"] = json.dumps({"sfcloud:toast": {"text": text, "level": level}})
    return response


@login_required
@require_POST
async def rule_remove(request: HttpRequest, uuid: UUID, rule_uuid: UUID) -> HttpResponse:
    """(htmx) The page's websocket shows the rules without it."""
    record, access = await _group_for(request, uuid)
    try:
        await secgroups.remove_rule(access.actor(request), record, str(rule_uuid))
    except Forbidden as exc:
        raise PermissionDenied(exc.message) from None
    except CloudError as exc:
        return _toast(exc.message, "error")
    return _toast("Rule removed; connections it allowed are ended.", "success")


@login_required
@require_POST
async def group_delete(request: HttpRequest, uuid: UUID) -> HttpResponse:
    record, access = await _group_for(request, uuid)
    return await change_and_go(
        request, secgroups.delete(access.actor(request), record),
        said=f"Security group {record.spec.name} deleted.", done_url=reverse("secgroup-list"),
        refused_url=reverse("secgroup-detail", args=[record.uuid]))


# --- an address set ------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
async def address_set_detail(request: HttpRequest, uuid: UUID) -> HttpResponse:
    access = await access_for(request)
    try:
        record = await addresssets.get(str(uuid), access.visible)
    except NotFound:
        raise Http404("No such address set") from None
    form = CidrsForm(request.POST or None, initial={"cidrs": "\n".join(record.spec.cidrs)})
    if request.method == "POST" and form.is_valid():
        try:
            await addresssets.set_cidrs(access.actor(request), record, form.cidr_list())
        except Forbidden as exc:
            raise PermissionDenied(exc.message) from None
        except (ValidationError, CloudError) as exc:
            add_refusal(form, exc, default="cidrs")
        else:
            messages.success(request, f"Address set {record.spec.name} now has "
                                      f"{len(form.cidr_list())} CIDR(s).")
            return HttpResponseRedirect(reverse("address-set-detail", args=[record.uuid]))
    return await arender(request, "secgroups/address_set.html", {
        "record": record, "form": form,
        "can_operate": access.can_operate(record.spec.namespace),
        **await events_context(record.kind, record.uuid),
    }, status=400 if form.errors else 200)


@login_required
@require_POST
async def address_set_delete(request: HttpRequest, uuid: UUID) -> HttpResponse:
    access = await access_for(request)
    try:
        record = await addresssets.get(str(uuid), access.visible)
    except NotFound:
        raise Http404("No such address set") from None
    return await change_and_go(
        request, addresssets.delete(access.actor(request), record),
        said=f"Address set {record.spec.name} deleted.", done_url=reverse("secgroup-list"),
        refused_url=reverse("address-set-detail", args=[record.uuid]))
