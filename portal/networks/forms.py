"""The create-network form. It feeds the same checks as the API, so a bad
netblock gets the same message in both."""

from __future__ import annotations

from django import forms

from cloudstate import netvalidation
from cloudstate.validation import ValidationError
from portal.errors import sentence


class NetworkForm(forms.Form):
    name = forms.CharField(max_length=63, help_text="Letters, digits, dots, hyphens, underscores.")
    netblock = forms.CharField(
        label="Address range", max_length=43, initial="10.0.0.0/24",
        help_text="An IPv4 range such as 10.0.0.0/24, with a prefix length from /8 to /29. "
                  "It may overlap other networks' ranges.",
    )
    provide_dhcp = forms.BooleanField(label="Hand out addresses by DHCP", required=False,
                                      initial=True)
    provide_nat = forms.BooleanField(
        label="Reach the outside through NAT", required=False, initial=True,
        help_text="Needs the cloud's uplink and floating network.",
    )
    provide_dns = forms.BooleanField(label="Answer DNS for the network's instance names",
                                     required=False)

    def clean_name(self) -> str:
        try:
            return netvalidation.network_name(self.cleaned_data["name"])
        except ValidationError as exc:
            raise forms.ValidationError(sentence(exc.message)) from exc

    def clean_netblock(self) -> str:
        """As the API checks it (host bits refused, naming the range to give)."""
        try:
            network = netvalidation.netblock(self.cleaned_data["netblock"])
        except ValidationError as exc:
            raise forms.ValidationError(sentence(exc.message)) from exc
        return str(network)


class InterfaceGroupsForm(forms.Form):
    """An interface's security groups as ticked, or its filtering off; one
    per NIC on the instance page, told apart by ``prefix`` (eth0, eth1...)."""

    security_groups = forms.MultipleChoiceField(
        label="Security groups", required=False, widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: the namespace's default group.")
    filtering_off = forms.BooleanField(
        label="Filtering off (no groups, no anti-spoofing)", required=False)

    def __init__(self, *args: object, groups: list[tuple[str, str]],
                 **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["security_groups"].choices = groups  # type: ignore[attr-defined]


class PlugForm(forms.Form):
    """One more NIC for a running instance (hot plug): its network, and its
    security groups (none ticked: the namespace's default, as at create)."""

    network = forms.ChoiceField(label="Add an interface on")
    security_groups = forms.MultipleChoiceField(
        label="In security groups", required=False, widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: the namespace's default group.")

    def __init__(self, *args: object, networks: list[tuple[str, str]],
                 groups: list[tuple[str, str]], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["network"].choices = networks  # type: ignore[attr-defined]
        self.fields["security_groups"].choices = groups  # type: ignore[attr-defined]
