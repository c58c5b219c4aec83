"""What the API's request bodies mean: Shaken Fist's shapes read into the
services' requests, each field checked with a message naming it (a 400).
Unknown keys are ignored. The pages build the same requests from their
forms; the rules both must obey are the services' own.

The bodies each route reads are declared as TypedDicts below (every key
optional: a missing one is the route's to refuse, with a 400 naming it);
the API's description (portal.api.openapi) is generated from them.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal, TypedDict

from cloudstate import disklayout, netvalidation, sshkeys, validation
from cloudstate import secgroups as rules_of
from cloudstate.validation import ValidationError
from portal.accounts.actor import Actor
from portal.accounts.models import Namespace
from portal.cloud import addresssets, interfaces, networks, secgroups
from portal.cloud.errors import BadRequest, NotFound
from portal.cloud.instances import (
    MAX_SSH_KEY_BYTES,
    MAX_USER_DATA_BYTES,
    DiskRequest,
    InstanceRequest,
)
from portal.cloud.refs import Namespaces

# --- the bodies, as declared for the API's description ------------------------------------------


class InNamespace(TypedDict, total=False):
    """Which namespace a request acts in (default: the caller's own)."""

    namespace: str


class ListBody(InNamespace, total=False):
    all: bool  # deleted objects too


class DeleteAllBody(InNamespace, total=False):
    confirm: bool


class DiskBody(TypedDict, total=False):
    size: int
    base: str
    bus: str
    type: Literal["disk", "cdrom"]


class NetdescBody(TypedDict, total=False):
    network_uuid: str
    address: str
    macaddress: str
    model: str
    float: bool | str
    security_groups: list[str]  # names or UUIDs; none given: the namespace's default
    port_security: bool
    allowed_addresses: list[str]


class InstanceBody(InNamespace, total=False):
    name: str
    cpus: int
    memory: int
    disk: list[DiskBody]
    network: list[NetdescBody]
    ssh_key: str
    user_data: str  # base64
    metadata: dict[str, Any]
    video: dict[str, Any]
    configdrive: Literal["openstack-disk", "none"]
    placed_on: str
    keypair: str


class NetworkBody(InNamespace, total=False):
    name: str
    netblock: str
    provide_dhcp: bool
    provide_nat: bool
    provide_dns: bool


class AuthBody(TypedDict, total=False):
    namespace: str
    key: str


class NamespaceBody(TypedDict, total=False):
    namespace: str
    key_name: str
    key: str


class KeyBody(TypedDict, total=False):
    key_name: str
    key: str


class ValueBody(TypedDict, total=False):
    value: Any


class MetadataBody(ValueBody, total=False):
    key: str


class HotplugBody(TypedDict, total=False):
    network: NetdescBody


class TrustBody(TypedDict, total=False):
    external_namespace: str


class DnsEntryBody(TypedDict, total=False):
    name: str
    value: str


class JoinTokenBody(TypedDict, total=False):
    etcd: bool  # the new node also becomes an etcd member (default false)
    ttl: int  # seconds it stays valid, 60 to 604800 (default SFCLOUD_JOIN_TOKEN_TTL)


class EventsBody(TypedDict, total=False):
    limit: int
    event_type: str


class ConsoleBody(TypedDict, total=False):
    length: int


class SnapshotBody(TypedDict, total=False):
    all: bool
    device: str


class ArtifactBody(InNamespace, total=False):
    url: str
    shared: bool
    name: str


class ArtifactListBody(TypedDict, total=False):
    node: str


class MaxVersionsBody(TypedDict, total=False):
    max_versions: int


class FromUploadBody(InNamespace, total=False):
    upload_uuid: str
    blob_uuid: str
    source_url: str
    shared: bool
    artifact_type: str
    sha512: str


class LabelBody(TypedDict, total=False):
    blob_uuid: str
    max_versions: int


class KeypairBody(InNamespace, total=False):
    name: str
    public_key: str


# --- reading them --------------------------------------------------------------------------------

_TRUE_WORDS = ("true", "yes", "1")
_FALSE_WORDS = ("false", "no", "0")


def flag(value: Any, field: str, *, default: bool, words: bool = False) -> bool:
    """A true/false field; absent or null is ``default``. ``words`` also
    takes "true"/"false" (yes/no, 1/0) as text, for the fields Shaken Fist's
    command line sends as strings (``-N float=true``)."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if words and isinstance(value, str) and value.lower() in _TRUE_WORDS + _FALSE_WORDS:
        return value.lower() in _TRUE_WORDS
    raise ValidationError(field, "must be true or false")


# --- where a request acts ----------------------------------------------------------------------


async def namespace_of(actor: Actor, body: dict[str, Any]) -> str:
    """The namespace a request acts in: the one it names, else the caller's own."""
    wanted = body.get("namespace") or actor.namespace
    if not wanted:
        raise BadRequest("namespace: you belong to no namespace; name one")
    if not isinstance(wanted, str) or not actor.can_read(wanted) \
            or not await Namespace.objects.filter(name=wanted).aexists():
        raise NotFound(f"namespace {wanted} not found")
    return wanted


async def listing_scope(actor: Actor, body: dict[str, Any]) -> Namespaces:
    """What a list shows: the namespace the body names, else all the caller sees."""
    if body.get("namespace"):
        return frozenset({await namespace_of(actor, body)})
    return actor.visible


async def deleting_scope(actor: Actor, body: dict[str, Any]) -> Namespaces:
    """What a "delete all" covers: one namespace, the one asked for (or the
    caller's own). A member of system, who sees every namespace, must name
    it, as in Shaken Fist: deleting a namespace's objects is then deliberate,
    and nothing ever deletes every namespace's at once."""
    if actor.is_system and not isinstance(body.get("namespace"), str):
        raise BadRequest("namespace: a caller in the system namespace must name the "
                         "namespace to delete from")
    return frozenset({await namespace_of(actor, body)})


# --- instances ---------------------------------------------------------------------------------


def user_data(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ValidationError("user_data", "must be base64 text")
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValidationError("user_data", f"is not valid base64 ({exc})") from exc
    if len(decoded) > MAX_USER_DATA_BYTES:
        raise ValidationError(
            "user_data", f"is {len(decoded)} bytes; the limit is {MAX_USER_DATA_BYTES}"
        )
    return value


def ssh_key(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or len(value) > MAX_SSH_KEY_BYTES:
        raise ValidationError("ssh_key", "must be an ssh public key")
    try:
        return sshkeys.parse(value).line
    except sshkeys.BadKey as exc:
        raise ValidationError("ssh_key", str(exc)) from exc


def disks(raw: Any) -> list[DiskRequest]:
    if not isinstance(raw, list) or not raw:
        raise ValidationError("disk", "at least one disk is required")
    if len(raw) > validation.MAX_DISKS:
        raise ValidationError("disk", f"at most {validation.MAX_DISKS} disks")
    found = []
    for index, item in enumerate(raw):
        field_name = f"disk[{index}]"
        if not isinstance(item, dict):
            raise ValidationError(field_name, "must be an object")
        kind = disklayout.disk_type(item.get("type"), f"{field_name}.type")
        bus = disklayout.bus(item.get("bus"), f"{field_name}.bus")
        if kind == "cdrom" and bus == "nvme":
            raise ValidationError(f"{field_name}.bus", "a cdrom can't be on nvme (no removable "
                                                       "media there): use usb, sata or scsi")
        base = item.get("base")
        if base is not None and not isinstance(base, str):
            raise ValidationError(f"{field_name}.base", "must be a string")
        if kind == "cdrom" and not base:
            raise ValidationError(f"{field_name}.base", "a cdrom needs an image")
        size = item.get("size")
        size_gb = 1 if size is None and kind == "cdrom" else validation.disk_gb(
            size, f"{field_name}.size"
        )
        found.append(DiskRequest(size_gb=size_gb, base=base or None, bus=bus, type=kind))
    return found


def nics(raw: Any) -> list[interfaces.NicRequest]:
    """Shaken Fist's netdescs (``network``), checked."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValidationError("network", "must be a list of network descriptions")
    if len(raw) > netvalidation.MAX_INTERFACES:
        raise ValidationError(
            "network", f"at most {netvalidation.MAX_INTERFACES} interfaces per instance"
        )
    found = []
    for index, item in enumerate(raw):
        name = f"network[{index}]"
        if not isinstance(item, dict):
            raise ValidationError(name, "must be an object with network_uuid")
        ref = item.get("network_uuid")
        if not isinstance(ref, str) or not ref.strip():
            raise ValidationError(f"{name}.network_uuid", "must name a network (UUID or name)")
        address = item.get("address")
        if address is not None and not isinstance(address, str):
            raise ValidationError(f"{name}.address", "must be an IPv4 address")
        if isinstance(address, str) and address.strip().lower() in ("", interfaces.NO_ADDRESS):
            address = interfaces.NO_ADDRESS if address.strip() else None
        mac = item.get("macaddress")
        found.append(interfaces.NicRequest(
            network=ref.strip(),
            address=address.strip() if isinstance(address, str) else None,
            macaddress=netvalidation.mac_address(mac, f"{name}.macaddress") if mac else None,
            model=netvalidation.nic_model(item.get("model"), f"{name}.model"),
            float=flag(item.get("float"), f"{name}.float", default=False, words=True),
            security_groups=group_refs(item.get("security_groups"),
                                       f"{name}.security_groups"),
            port_security=flag(item.get("port_security"), f"{name}.port_security",
                               default=True, words=True),
            allowed_addresses=rules_of.allowed_addresses(item.get("allowed_addresses"),
                                                         f"{name}.allowed_addresses"),
        ))
    return found


def group_refs(value: Any, field: str) -> list[str] | None:
    """Security groups by name or UUID: a list, or one as text (Shaken
    Fist's command line sends "a,b"); None or nothing: the default."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValidationError(field, "must be a list of security group names or UUIDs")
    if len(value) > rules_of.MAX_GROUPS_PER_INTERFACE:
        raise ValidationError(
            field, f"at most {rules_of.MAX_GROUPS_PER_INTERFACE} security groups per interface")
    return [v.strip() for v in value]
def netdesc(body: dict[str, Any]) -> interfaces.NicRequest:
    """The one NIC of a hot plug: ``{"network": netdesc}``, as Shaken Fist's client sends it."""
    raw = body.get("network")
    if not isinstance(raw, dict):
        raise ValidationError("network", "must be one network description (an object with "
                                         "network_uuid)")
    return nics([raw])[0]


def instance_request(body: dict[str, Any]) -> InstanceRequest:
    """A create request as Shaken Fist's client sends it."""
    configdrive = body.get("configdrive") or "openstack-disk"
    if configdrive not in ("openstack-disk", "none"):
        raise ValidationError("configdrive", "must be openstack-disk or none")
    placed_on = body.get("placed_on")
    if placed_on is not None and not isinstance(placed_on, str):
        raise ValidationError("placed_on", "must be a node name")
    keypair = body.get("keypair") or None
    if keypair is not None and not isinstance(keypair, str):
        raise ValidationError("keypair", "must be the name of a keypair")
    uefi = flag(body.get("uefi"), "uefi", default=False, words=True)
    secure_boot = flag(body.get("secure_boot"), "secure_boot", default=False, words=True)
    if secure_boot and not uefi:
        raise ValidationError("secure_boot", "secure boot requires UEFI be enabled")
    nvram_template = body.get("nvram_template") or None
    if nvram_template is not None and not isinstance(nvram_template, str):
        raise ValidationError("nvram_template", "must name an image")
    return InstanceRequest(
        name=validation.hostname(body.get("name")),
        cpus=validation.cpus(body.get("cpus")),
        memory=validation.memory_mib(body.get("memory")),
        disks=disks(body.get("disk")),
        ssh_key=ssh_key(body.get("ssh_key")),
        user_data=user_data(body.get("user_data")),
        # The service checks both, whichever door they came through.
        metadata=body.get("metadata"),
        video=body.get("video"),
        configdrive=configdrive,
        placed_on=placed_on,
        keypair=keypair,
        networks=nics(body.get("network")),
        uefi=uefi,
        secure_boot=secure_boot,
        # Shaken Fist uses the template only with UEFI, and so do we.
        nvram_template=nvram_template if uefi else None,
    )


# --- networks and metadata ---------------------------------------------------------------------


def network_request(body: dict[str, Any]) -> networks.NetworkRequest:
    """A create request as Shaken Fist's client sends it; the service checks
    the name and the netblock."""
    return networks.NetworkRequest(
        name=body.get("name"),
        netblock=body.get("netblock"),
        provide_dhcp=flag(body.get("provide_dhcp"), "provide_dhcp", default=True),
        provide_nat=flag(body.get("provide_nat"), "provide_nat", default=True),
        provide_dns=flag(body.get("provide_dns"), "provide_dns", default=False),
    )


def metadata_key(body: dict[str, Any]) -> Any:
    """The key of POST .../metadata (the collection): ``{"key": ..., "value": ...}``."""
    if body.get("key") in (None, ""):
        raise BadRequest("key: missing; send {\"key\": ..., \"value\": ...}")
    return body["key"]


def metadata_value(body: dict[str, Any]) -> Any:
    """The value of PUT .../metadata/<key>: any JSON, null included, but given."""
    if "value" not in body:
        raise BadRequest("value: missing; send {\"value\": ...}")
    return body["value"]


# --- security groups ---------------------------------------------------------------------------


def security_group_request(body: dict[str, Any]) -> secgroups.GroupRequest:
    """A create: a name, a description and rules (each checked by the service)."""
    rules = body.get("rules")
    if rules is not None and not isinstance(rules, list):
        raise ValidationError("rules", "must be a list of rules")
    return secgroups.GroupRequest(name=body.get("name"), description=body.get("description"),
                                  rules=rules or [])


def rules_to_add(body: dict[str, Any]) -> list[Any]:
    """POST .../rules takes one rule, or {"rules": [...]} to add several at once."""
    if "rules" in body:
        if not isinstance(body["rules"], list):
            raise ValidationError("rules", "must be a list of rules")
        return body["rules"]
    if "direction" not in body:
        raise BadRequest('send a rule ({"direction": "ingress", ...}) or {"rules": [...]}')
    return [body]


def address_set_request(body: dict[str, Any]) -> addresssets.AddressSetRequest:
    return addresssets.AddressSetRequest(name=body.get("name"), cidrs=body.get("cidrs"),
                                         description=body.get("description"))


def given_field(body: dict[str, Any], name: str) -> Any:
    """A field a PUT must carry (null included, but present)."""
    if name not in body:
        raise BadRequest(f"{name}: missing; send {{\"{name}\": ...}}")
    return body[name]
