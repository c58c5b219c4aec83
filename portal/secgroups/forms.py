"""The forms of the security group pages. They only gather what a person
typed into the shape the API takes; the services check it, so a bad rule
reads the same in both."""

from __future__ import annotations

from typing import Any

from django import forms

from cloudstate import secgroups as rules_of

ANYWHERE = "any"
CIDRS = "cidrs"
PROTOCOLS = [("any", "Any"), ("tcp", "TCP"), ("udp", "UDP"), ("icmp", "ICMP")]


class GroupForm(forms.Form):
    name = forms.CharField(max_length=63,
                           help_text="Letters, digits, dots, hyphens, underscores.")
    description = forms.CharField(max_length=rules_of.MAX_DESCRIPTION, required=False)


class RuleForm(forms.Form):
    direction = forms.ChoiceField(choices=[("ingress", "In (ingress)"),
                                           ("egress", "Out (egress)")])
    protocol = forms.ChoiceField(choices=PROTOCOLS, initial="tcp")
    ports = forms.CharField(required=False, max_length=200,
                            help_text="TCP or UDP: e.g. 22 or 80,443,8000-8100; empty: all.")
    icmp_type = forms.IntegerField(label="ICMP type", required=False, min_value=0,
                                   max_value=255, help_text="ICMP only, e.g. 8 for echo.")
    remote = forms.ChoiceField(label="From / to",
                               help_text="Where the traffic comes from (in) or goes to (out).")
    cidrs = forms.CharField(label="CIDRs", required=False, max_length=2000,
                            help_text="e.g. 10.0.0.0/8, 192.0.2.7 (comma or space separated).")
    description = forms.CharField(max_length=rules_of.MAX_DESCRIPTION, required=False)

    def __init__(self, *args: Any, groups: list[tuple[str, str]] = (),  # type: ignore[assignment]
                 address_sets: list[tuple[str, str]] = (), **kwargs: Any):  # type: ignore[assignment]
        super().__init__(*args, **kwargs)
        self.fields["remote"].choices = (
            [(ANYWHERE, "Anywhere"), (CIDRS, "These CIDRs…")]
            + [(f"group:{uuid}", f"Members of group {name}") for uuid, name in groups]
            + [(f"set:{uuid}", f"Address set {name}") for uuid, name in address_sets])

    def rule(self) -> dict[str, Any]:
        """The rule as the API would take it."""
        data = self.cleaned_data
        remote: dict[str, Any] | None = None
        choice = data.get("remote") or ANYWHERE
        if choice == CIDRS:
            remote = {"cidrs": (data.get("cidrs") or "").replace(",", " ").split()}
        elif choice.startswith("group:"):
            remote = {"group": choice.removeprefix("group:")}
        elif choice.startswith("set:"):
            remote = {"address_set": choice.removeprefix("set:")}
        return {"direction": data["direction"], "protocol": data["protocol"],
                "ports": data.get("ports") or None, "icmp_type": data.get("icmp_type"),
                "remote": remote, "description": data.get("description") or ""}


class CidrsForm(forms.Form):
    cidrs = forms.CharField(label="CIDRs", required=False,
                            widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
                            help_text="One or more, comma, space or line separated.")

    def cidr_list(self) -> list[str]:
        return (self.cleaned_data.get("cidrs") or "").replace(",", " ").split()


class AddressSetForm(CidrsForm):
    name = forms.CharField(max_length=63)
    description = forms.CharField(max_length=rules_of.MAX_DESCRIPTION, required=False)
    field_order = ["name", "cidrs", "description"]
