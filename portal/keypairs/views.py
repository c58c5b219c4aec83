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
from portal.errors import sentence
from portal.formerrors import add_refusal
from portal.web import arender


class KeypairForm(forms.Form):
    """Both fields are checked at once, by the service's own rules, so every
    problem shows on the first submit."""

    name = forms.CharField(label="Name", max_length=63,
                           help_text="How you pick it when creating an instance: letters, "
                                     "digits, dots, hyphens, underscores and @.")
    public_key = forms.CharField(
        label="Public key", max_length=keypairs.MAX_KEY_TEXT,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        help_text="One OpenSSH public key: the contents of a .pub file, such as "
                  "~/.ssh/id_ed25519.pub.")

    def clean_name(self) -> str:
        try:
            return keypairs.validate_name(self.cleaned_data["name"])
        except ValidationError as exc:
            raise forms.ValidationError(sentence(exc.message)) from None

    def clean_public_key(self) -> str:
        try:
            return keypairs.validate_key(self.cleaned_data["public_key"]).line
        except ValidationError as exc:
            raise forms.ValidationError(sentence(f"This is not a usable key: {exc.message}")) \
                from None


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
        except (ValidationError, CloudError) as exc:
            add_refusal(form, exc, default="name")
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
