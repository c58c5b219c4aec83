"""The create-instance form. It produces the same request the API builds,
so both go through one set of checks."""

from __future__ import annotations

import base64
import json
from typing import Any

from django import forms

from cloudstate import disklayout, metadata, sshkeys, validation
from cloudstate.model import Keypair
from portal.cloud.instances import MAX_USER_DATA_BYTES
from portal.cloud.interfaces import NicRequest
from portal.errors import sentence

CUSTOM_URL = "__url__"
PASTE_KEY = "__paste__"
BIOS, UEFI, SECURE_BOOT = "bios", "uefi", "secure-boot"


def group_field(network_uuid: str) -> str:
    return f"secgroups_{network_uuid.replace('-', '')}"


class InstanceForm(forms.Form):
    name = forms.CharField(
        max_length=63, help_text="Becomes the guest's hostname: letters, digits and hyphens."
    )
    cpus = forms.IntegerField(label="vCPUs", min_value=1, max_value=validation.MAX_CPUS, initial=1)
    memory = forms.IntegerField(
        label="Memory (MiB)", min_value=validation.MIN_MEMORY_MIB,
        max_value=validation.MAX_MEMORY_MIB, initial=256, step_size=1,
    )
    disk_size = forms.IntegerField(
        label="Disk size (GB)", min_value=1, max_value=validation.MAX_DISK_GB, initial=1
    )
    disk_bus = forms.ChoiceField(
        label="Disk bus", initial=disklayout.DEFAULT_BUS,
        choices=[(bus, bus) for bus in disklayout.BUSES],
        help_text="How the guest sees its disk; virtio is fastest. Its OS needs the driver.")
    firmware = forms.ChoiceField(
        label="Boot firmware", initial=BIOS,
        choices=[(BIOS, "BIOS"), (UEFI, "UEFI"), (SECURE_BOOT, "UEFI with secure boot")],
        help_text="UEFI needs an image that boots under UEFI; secure boot, a signed one.")
    image = forms.ChoiceField(label="Image", help_text="What the disk starts with.")
    image_url = forms.CharField(
        label="Image URL", required=False, max_length=2048,
        help_text="An http(s) URL of a qcow2 or raw disk image, fetched once per node.",
    )
    keypair = forms.ChoiceField(
        label="SSH key", required=False,
        help_text="Put into the guest's config drive; cloud-init adds it to the default user.",
    )
    ssh_key = forms.CharField(
        label="Public key", required=False, widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One OpenSSH public key, e.g. the contents of ~/.ssh/id_ed25519.pub.",
    )
    user_data = forms.CharField(
        label="User data", required=False,
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
        help_text=f"A #cloud-config document or a script starting with #!, run at first "
                  f"boot; up to {MAX_USER_DATA_BYTES // 1024} KiB.",
    )
    user_data_file = forms.FileField(
        label="…or upload user data", required=False,
        help_text="A file instead of typing it above.",
    )

    networks = forms.MultipleChoiceField(
        label="Networks", required=False, widget=forms.CheckboxSelectMultiple,
        help_text="One interface on each, in this order: the first is eth0.",
    )
    float_first = forms.BooleanField(
        label="Give the first interface a floating address", required=False,
    )

    def __init__(self, *args, images: list[str],  # type: ignore[no-untyped-def]
                 namespaces: list[str] | None = None, keypairs: list[Keypair] = (),  # type: ignore[assignment]
                 networks: list[tuple[str, str]] = (),  # type: ignore[assignment]
                 security_groups: list[tuple[str, str]] = (), **kwargs):  # type: ignore[assignment]
        super().__init__(*args, **kwargs)
        self.fields["networks"].choices = list(networks)
        if not networks:
            del self.fields["networks"]
            del self.fields["float_first"]
        # Each NIC's security groups: a field per network, after the networks.
        for uuid, label in networks if security_groups else ():
            self.fields[group_field(uuid)] = forms.MultipleChoiceField(
                label=f"Security groups on {label}", required=False,
                widget=forms.CheckboxSelectMultiple, choices=list(security_groups),
                help_text="None ticked: the namespace's default group.")
        if namespaces is not None:
            # Asked only when the person is looking at all namespaces at once.
            self.fields["namespace"] = forms.ChoiceField(
                label="Namespace", choices=[(ns, ns) for ns in namespaces],
                help_text="The namespace that will own the instance.")
            self.order_fields(["namespace"])
        choices = [(name, name) for name in images] + [(CUSTOM_URL, "An image from a URL…")]
        self.fields["image"].choices = choices
        if images:
            self.fields["image"].initial = "demo" if "demo" in images else images[0]
        self.fields["keypair"].choices = (
            [("", "None")]
            + [(k.name, f"{k.name} ({k.fingerprint[:19]}…)") for k in keypairs]
            + [(PASTE_KEY, "Paste a public key…")]
        )

    def clean_name(self) -> str:
        try:
            return validation.hostname(self.cleaned_data["name"])
        except validation.ValidationError as exc:
            raise forms.ValidationError(sentence(exc.message)) from exc

    def clean_image_url(self) -> str:
        url = (self.cleaned_data.get("image_url") or "").strip()
        try:
            return validation.image_url(url, "image_url") if url else ""
        except validation.ValidationError as exc:
            raise forms.ValidationError(sentence(exc.message)) from exc

    def clean_ssh_key(self) -> str:
        text = self.cleaned_data.get("ssh_key", "").strip()
        if not text:
            return ""
        try:
            return sshkeys.parse(text).line
        except sshkeys.BadKey as exc:
            raise forms.ValidationError(f"This is not a usable key: {exc}.") from exc

    def clean_user_data_file(self):  # type: ignore[no-untyped-def]
        upload = self.cleaned_data.get("user_data_file")
        if upload is None:
            return None
        if upload.size > MAX_USER_DATA_BYTES:
            raise forms.ValidationError(
                f"The file is {upload.size} bytes; user data may be at most "
                f"{MAX_USER_DATA_BYTES} bytes.")
        return upload.read()

    def clean(self):  # type: ignore[no-untyped-def]
        data = super().clean()
        if data.get("image") == CUSTOM_URL and not data.get("image_url"):
            self.add_error("image_url", "Give the URL of the image to start from.")
        if data.get("keypair") == PASTE_KEY and not data.get("ssh_key") \
                and "ssh_key" not in self.errors:
            self.add_error("ssh_key", "Paste the public key, or pick another choice above.")
        typed = data.get("user_data") or ""
        uploaded = data.get("user_data_file")
        if typed.strip() and uploaded:
            self.add_error("user_data_file", "Give user data either typed or as a file, "
                                             "not both.")
        raw = uploaded if uploaded else typed.replace("\r\n", "\n").encode()
        if len(raw) > MAX_USER_DATA_BYTES:
            self.add_error("user_data", f"User data is {len(raw)} bytes; the limit is "
                                        f"{MAX_USER_DATA_BYTES} bytes.")
        data["user_data_b64"] = base64.b64encode(raw).decode() if raw.strip() else None
        return data

    @property
    def ssh_key_and_keypair(self) -> tuple[str | None, str | None]:
        """(pasted key, keypair name): at most one of them."""
        choice = self.cleaned_data.get("keypair")
        if choice == PASTE_KEY:
            return self.cleaned_data.get("ssh_key") or None, None
        return None, choice or None

    @property
    def nics(self) -> list[NicRequest]:
        chosen = self.cleaned_data.get("networks") or []
        if not chosen:
            return []
        order = [uuid for uuid, _ in self.fields["networks"].choices]
        return [NicRequest(network=uuid, float=index == 0 and bool(
                    self.cleaned_data.get("float_first")),
                    security_groups=self.cleaned_data.get(group_field(uuid)) or None)
                for index, uuid in enumerate(u for u in order if u in chosen)]

    @property
    def uefi(self) -> bool:
        return self.cleaned_data.get("firmware") in (UEFI, SECURE_BOOT)

    @property
    def secure_boot(self) -> bool:
        return self.cleaned_data.get("firmware") == SECURE_BOOT

    @property
    def base_field(self) -> str:
        """The field the disk's base came from (a refusal of it shows there)."""
        return "image_url" if self.cleaned_data.get("image") == CUSTOM_URL else "image"

    @property
    def base(self) -> str:
        data = self.cleaned_data
        return data["image_url"] if data["image"] == CUSTOM_URL else data["image"]


class TagForm(forms.Form):
    """A tag (metadata key and value) on an instance, checked by the rules
    the API uses, both fields at once."""

    key = forms.CharField(label="Key", max_length=128,
                          widget=forms.TextInput(attrs={"autocomplete": "off"}))
    value = forms.CharField(label="Value", required=False, max_length=4096,
                            widget=forms.TextInput(attrs={"autocomplete": "off"}),
                            help_text='Text, or JSON such as ["web", "blue"] for the tags key.')

    def clean_key(self) -> str:
        try:
            return metadata.validate_key(self.cleaned_data["key"].strip())
        except validation.ValidationError as exc:
            raise forms.ValidationError(sentence(exc.message)) from exc

    def clean_value(self) -> object:
        raw = self.cleaned_data.get("value", "")
        try:
            value = json.loads(raw) if raw.strip()[:1] in ("[", "{") else raw
        except ValueError:
            # Looks like JSON but is not: kept as the text it is.
            value = raw
        try:
            return metadata.validate_value(value)
        except validation.ValidationError as exc:
            raise forms.ValidationError(sentence(exc.message)) from exc


class SnapshotForm(forms.Form):
    device = forms.ChoiceField(label="Disks", required=False)

    def __init__(self, *args: Any, devices: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["device"].choices = [("", "All disks, at one instant")] + [
            (device, f"{device} only") for device in devices]
