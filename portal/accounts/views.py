"""Logging in and out, and choosing the namespace to work in."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from portal.accounts.access import SESSION_KEY
from portal.accounts.models import Membership


@login_required
@require_POST
def switch_namespace(request: HttpRequest) -> HttpResponse:
    wanted = request.POST.get("namespace", "")
    if Membership.objects.filter(user=request.user, namespace__name=wanted).exists():
        request.session[SESSION_KEY] = wanted
    target = request.POST.get("next") or reverse("instance-list")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = reverse("instance-list")
    return HttpResponseRedirect(target)
