"""The keypairs page: the namespace's ssh public keys, add one, delete one."""

from __future__ import annotations

from uuid import UUID

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from cloudstate.validation import ValidationError
from portal.accounts.access import access_for
from portal.cloud import keypairs
from portal.cloud.errors import CloudError, Forbidden, NotFound
from portal.web import arender


class KeypairForm(forms.Form):
    name = forms.CharField(label="Name", max_length=63,
                           help_text="How you pick it when creating an instance.")
    public_key = forms.CharField(
        label="Public key", widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        help_text="One OpenSSH public key: the contents of a .pub file, such as "
                  "~/.ssh/id_ed25519.pub.")


@login_required
@require_http_methods(["GET", "POST"])
async def keypair_list(request: HttpRequest) -> HttpResponse:
    access = await access_for(request)
    namespace = access.current
    can_operate = namespace is not None and access.can_operate(namespace)
    if request.method == "POST" and not can_operate:
        raise PermissionDenied("Your role here does not let you add keypairs.")
    form = KeypairForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        assert namespace is not None
        try:
            keypair = await keypairs.create(access.actor(request), form.cleaned_data["name"],
                                            form.cleaned_data["public_key"], namespace)
        except ValidationError as exc:
            form.add_error("public_key" if exc.field == "public_key" else "name", exc.message)
        except CloudError as exc:
            form.add_error("name", exc.message)
        else:
            messages.success(request, f"Keypair {keypair.name} added ({keypair.fingerprint}).")
            return HttpResponseRedirect(reverse("keypair-list"))
    found = await keypairs.list_keypairs(access.scope)
    return await arender(request, "keypairs/list.html", {
        "keypairs": found, "form": form, "can_operate": can_operate,
    }, status=400 if form.errors else 200)


@login_required
@require_POST
async def keypair_delete(request: HttpRequest, uuid: UUID) -> HttpResponse:
    access = await access_for(request)
    try:
        keypair = await keypairs.get(str(uuid), access.visible)
    except NotFound:
        raise Http404("No such keypair") from None
    try:
        await keypairs.delete(access.actor(request), keypair)
    except Forbidden as exc:
        raise PermissionDenied(exc.message) from None
    messages.success(request, f"Keypair {keypair.name} deleted. Instances made with it "
                              "keep the key.")
    return HttpResponseRedirect(reverse("keypair-list"))
