"""The style guide page: every component of the portal's look, with sample data.

Development only: `view` answers 404 unless DEBUG, so it can be routed unconditionally
(e.g. path("styleguide/", styleguide.view)). deploy/render-styleguide.py renders the same
template to a static file without the portal's settings.
"""

from __future__ import annotations

import math

from django import forms
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from portal.listing import Filter, Listing, Sort

STATES = [
    "initial",
    "creating",
    "created",
    "running",
    "on",
    "off",
    "paused",
    "error",
    "crashed",
    "deleting",
    "deleted",
    "transition-to-on",
]


class DemoForm(forms.Form):
    name = forms.CharField(
        max_length=63, help_text="Letters, digits and hyphens; unique in the namespace."
    )
    image = forms.ChoiceField(
        choices=[
            ("debian-12", "debian-12"),
            ("ubuntu-24.04", "ubuntu-24.04"),
            ("cirros", "cirros"),
        ],
    )
    cpus = forms.IntegerField(label="vCPUs", min_value=1, max_value=16, initial=1)
    memory = forms.IntegerField(
        label="Memory (MiB)", min_value=128, initial=1024, help_text="At least 128 MiB."
    )
    networks = forms.MultipleChoiceField(
        choices=[("lan", "lan (10.0.0.0/24)"), ("dmz", "dmz (192.168.50.0/24)")],
        widget=forms.CheckboxSelectMultiple,
    )
    ssh_key = forms.CharField(
        label="SSH public key", required=False, widget=forms.TextInput(attrs={"class": "mono"})
    )
    user_data = forms.CharField(
        label="User data",
        required=False,
        widget=forms.Textarea(attrs={"class": "mono", "rows": 4}),
        help_text="cloud-init user data, written to the config drive.",
    )
    power_on = forms.BooleanField(label="Power on once created", required=False, initial=True)

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("name") == "web-1":
            raise forms.ValidationError("An instance named web-1 already exists in namespace demo.")
        return cleaned


# A list as the portal's lists are (portal.listing), over the sample instances.
SAMPLE_LIST: Listing[dict] = Listing(
    sorts={"name": Sort("Name", lambda row: row["name"]),
           "cpus": Sort("vCPUs", lambda row: row["cpus"], up="fewest first", down="most first")},
    default_sort="name",
    filters={"state": Filter("State", lambda row, value: row["state"] == value,
                             lambda rows: [(s, s) for s in sorted({r["state"] for r in rows})])},
    search=lambda row, term: term in row["name"],
    tie=lambda row: row["uuid"],
    search_help="A name, the start of a UUID or an address, or a tag.",
)


def context() -> dict:
    invalid = DemoForm(
        {"name": "web-1", "image": "debian-12", "cpus": "64", "memory": "64"},
        auto_id="bad_%s",
    )
    invalid.is_valid()
    instances = [
        {
            "name": "web-1",
            "uuid": "5f0c3f6e-2a41-4c6b-9d3e-8e7b1c2a9f10",
            "state": "running",
            "ip": "10.0.0.12",
            "mac": "02:00:0a:00:00:0c",
            "node": "node-a",
            "cpus": 2,
            "memory": 2048,
        },
        {
            "name": "db-primary",
            "uuid": "a7d1e2b4-6c3f-4e8a-b1d0-3f9c7e5a2b61",
            "state": "creating",
            "ip": "10.0.0.13",
            "mac": "02:00:0a:00:00:0d",
            "node": "node-b",
            "cpus": 4,
            "memory": 8192,
        },
        {
            "name": "build-runner",
            "uuid": "0c9e8d7f-1b2a-4c3d-8e4f-5a6b7c8d9e0f",
            "state": "paused",
            "ip": "10.0.0.20",
            "mac": "02:00:0a:00:00:14",
            "node": "node-a",
            "cpus": 8,
            "memory": 16384,
        },
        {
            "name": "scratch",
            "uuid": "e3b0c442-98fc-4c14-9afb-f4c8996fb924",
            "state": "error",
            "ip": "",
            "mac": "",
            "node": "",
            "cpus": 1,
            "memory": 512,
        },
    ]
    # Sorted by something the list has not: said beside the control, the default used.
    rows_page = SAMPLE_LIST.page(instances, SAMPLE_LIST.read({"sort": "price", "per_page": "25"}))
    return {
        "list": {**SAMPLE_LIST.view_context(instances, rows_page), "list_label": "instances"},
        "states": STATES,
        "form": DemoForm(),
        "invalid_form": invalid,
        "instances": instances,
        # A busy hour with a gap (the guest was off for a while), as lists draw them.
        "cpu_hour": [round(0.5 + 0.4 * math.sin(i / 6), 3) if not 30 <= i < 36 else None
                     for i in range(60)],
    }


def view(request: HttpRequest) -> HttpResponse:
    if not settings.DEBUG:
        raise Http404("The style guide exists only with DEBUG on.")
    return render(request, "styleguide.html", context())
