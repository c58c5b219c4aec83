"""The create-instance form. It produces the same request the API builds,
so both go through one set of checks."""

from __future__ import annotations

from django import forms

from cloudstate import validation

CUSTOM_URL = "__url__"


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
    image = forms.ChoiceField(label="Image", help_text="What the disk starts with.")
    image_url = forms.URLField(
        label="Image URL", required=False, assume_scheme="https",
        help_text="An http(s) URL of a qcow2 or raw disk image, fetched once per node.",
    )

    def __init__(self, *args, images: list[str],  # type: ignore[no-untyped-def]
                 namespaces: list[str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
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

    def clean_name(self) -> str:
        try:
            return validation.hostname(self.cleaned_data["name"])
        except validation.ValidationError as exc:
            raise forms.ValidationError(exc.message) from exc

    def clean(self):  # type: ignore[no-untyped-def]
        data = super().clean()
        if data.get("image") == CUSTOM_URL and not data.get("image_url"):
            self.add_error("image_url", "Give the URL of the image to start from.")
        return data

    @property
    def base(self) -> str:
        data = self.cleaned_data
        return data["image_url"] if data["image"] == CUSTOM_URL else data["image"]
