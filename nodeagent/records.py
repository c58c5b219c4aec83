"""What the node agent accepts from etcd, checked before it acts on anything.

The agent runs as root and turns what it reads into file names, command
arguments, domain XML and kernel objects. etcd only lets in holders of the
cloud's certificates, but a record is still checked as if anyone had written
it: one leaked key, or one bug in a writer, must not become a path outside
the agent's directories or a device name libvirt reads as something else.

Every record the agent mirrors passes ``RecordGate`` first (the gate of its
``Mirror``). One that fails is not mirrored, so no part of the agent sees it
and nothing is done with it; the mirror keeps it aside with the reason, and
the agent reports that reason as the error of the instance, network or blob
concerned, while leaving whatever it had made for it alone.

Where each checked field ends up:

    instances/<uuid>        uuid: the instance's directory, the domain's uuid and name;
                            disks[].device: a file name in that directory and the
                            XML target; size_gb: qemu-img's size; bus, type: XML;
                            source.blob_uuid: a file name in the blob store and the
                            image cache; source.url: the base as the user gave it,
                            in messages only (never fetched: the blob says what is);
                            name: XML, the config drive's hostname, DNS in dnsmasq;
                            node: whether it is ours; interfaces: keys read next
    interfaces/<uuid>       uuid: the tap's name; macaddr, model: XML, dnsmasq's
                            hosts file; ipv4, floating: dnsmasq and nftables
    networks/<uuid>         vxid: link names and the VXLAN id; netblock: addresses,
                            routes, dnsmasq ranges, nftables; mtu: links;
                            floating_gateway: nftables; name: logs, events
    artifacts/<uuid>        versions: the blobs to hold (file names); precache
    blobs/<uuid>            uuid: a file name; origin and source_url: what is fetched
                            (http(s) for a fetch; file:// only for a file an operator
                            registered, origin file); device: a file name in an
                            instance directory (snapshots); node, instance_uuid: keys
    observed/blobs/<n>/<u>  sha512: compared with what is copied from node n
    uploads/<uuid>          uuid: a file name in the upload directory; node: ours?
    nodes/<name>            ip: VXLAN peers (kernel), the URL of its agent's server;
                            agent_port: that URL
    ipam/floating/<addr>    address: nftables
    roles/network-node      the node's name: compared with ours
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from cloudstate import netvalidation, storage, validation
from cloudstate.keys import FLOATING_POOL, Keys
from cloudstate.model import (
    AddressReservation,
    Artifact,
    Blob,
    BlobObserved,
    InstanceSpec,
    InterfaceSpec,
    NetworkSpec,
    NodeInfo,
    Record,
    Upload,
)
from cloudstate.power import API_ACTIONS

# vda, vdc..., hdc... (QEMU's own names for a bus's disks); never a path.
DEVICE = re.compile(r"(?:vd|sd|hd)[a-z]{1,2}")
CONFIG_DRIVE_DEVICE = "vdb"  # the agent's own, never a record's
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
SHA512 = re.compile(r"[0-9a-f]{128}")
BUSES = ("virtio", "ide", "sata", "scsi")
DISK_TYPES = ("disk", "cdrom")
MAX_VXID = 2**24 - 1
MAX_TEXT = 255
MAX_URL = 2048
MAX_USER_DATA = 1024 * 1024  # base64 of the API's 64 KiB with ample room
MAX_SSH_KEY = 16 * 1024
MAX_INTERFACES = 16
BLOB_STATES = ("downloading", "creating", "ready", "error")
BLOB_ORIGINS = ("fetch", "snapshot", "upload", "file")
DESIRED = ("active", "deleted")
MAX_SIZE = 2**62
MAX_VERSIONS = 1000
POWER_ACTIONS = tuple(API_ACTIONS.values())


class BadRecord(ValueError):
    """A record the agent will not act on; the message says which field and why."""


# --- small checks --------------------------------------------------------------------


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise BadRecord(message)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def is_uuid(value: Any) -> bool:
    """A uuid in its canonical form, as the portal writes them."""
    try:
        return isinstance(value, str) and str(uuidlib.UUID(value)) == value
    except ValueError:
        return False


def _uuid(value: Any, field: str) -> str:
    """A uuid in its canonical form (what the agent makes paths and names of)."""
    _require(is_uuid(value), f"{field} {_shown(value)} is not a uuid")
    return str(value)


def _optional_uuid(value: Any, field: str) -> None:
    if value is not None:
        _uuid(value, field)


def _int(value: Any, field: str, low: int, high: int) -> int:
    _require(isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
             f"{field} {_shown(value)} is not a whole number from {low} to {high}")
    return int(value)


def _bool(value: Any, field: str) -> None:
    _require(isinstance(value, bool), f"{field} {_shown(value)} is not true or false")


def _text(value: Any, field: str, *, optional: bool = False, limit: int = MAX_TEXT) -> None:
    if value is None and optional:
        return
    _require(isinstance(value, str) and len(value) <= limit
             and not any(ord(c) < 32 or ord(c) == 127 for c in value),
             f"{field} {_shown(value)} is not text of at most {limit} printable characters")


def _one_of(value: Any, field: str, choices: tuple[str, ...]) -> None:
    _require(value in choices, f"{field} {_shown(value)} is not one of {', '.join(choices)}")


def _valid(check: Callable[..., Any], value: Any, field: str) -> Any:
    """One of the portal's own validators, its message as the reason."""
    try:
        return check(value, field)
    except validation.ValidationError as exc:
        raise BadRecord(str(exc)) from None


def _node(value: Any, field: str) -> str:
    _require(isinstance(value, str) and bool(NODE_NAME.fullmatch(value)),
             f"{field} {_shown(value)} is not a node name")
    return str(value)


def _ipv4(value: Any, field: str, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    try:
        ok = isinstance(value, str) and str(ipaddress.IPv4Address(value)) == value
    except ValueError:
        ok = False
    _require(ok, f"{field} {_shown(value)} is not an IPv4 address")


def _ip(value: Any, field: str) -> None:
    try:
        ok = isinstance(value, str) and str(ipaddress.ip_address(value)) == value
    except ValueError:
        ok = False
    _require(ok, f"{field} {_shown(value)} is not an IP address")


def _device(value: Any, field: str) -> str:
    _require(isinstance(value, str) and bool(DEVICE.fullmatch(value)),
             f"{field} {_shown(value)} is not a disk device name such as vda")
    _require(value != CONFIG_DRIVE_DEVICE, f"{field} {value} is the config drive's")
    return str(value)


def _url_parts(value: Any, field: str) -> tuple[str, str, str]:
    """(scheme, host, path) of a URL from a record, or BadRecord."""
    _text(value, field, limit=MAX_URL)
    try:
        parts = urlsplit(value)
        return parts.scheme.lower(), parts.hostname or "", parts.path
    except ValueError:
        raise BadRecord(f"{field} {_shown(value)} is not a URL") from None


def web_url(value: Any, field: str) -> None:
    """A URL anyone may have given: the agent fetches http(s) only."""
    scheme, host, _ = _url_parts(value, field)
    _require(scheme in ("http", "https"),
             f"{field} {_shown(value)}: only http and https URLs are fetched")
    _require(bool(host), f"{field} {_shown(value)} names no host")


def file_url(value: Any, field: str) -> None:
    """A file an operator registered (the demo image, say): an absolute
    path without ``..``, on this machine."""
    scheme, _, path = _url_parts(value, field)
    _require(scheme == "file", f"{field} {_shown(value)} is not a file:// URL")
    netloc = urlsplit(value).netloc
    path = unquote(path)
    _require(netloc in ("", "localhost") and path.startswith("/")
             and os.path.normpath(path) == path and ".." not in path.split("/"),
             f"{field} {_shown(value)} is not a plain absolute file path")


def base_reference(value: Any, field: str, *, before_blobs: bool) -> None:
    """A disk's base as the user gave it (``portal.cloud.bases``), kept
    beside the blob it was resolved to and only ever shown: an http(s) URL,
    an sf:// reference, label:<name>, or an artifact's name or UUID. A
    record from before blobs named a registered image by the URL it was
    fetched from, a file:// one included."""
    _text(value, field, limit=MAX_URL)
    if value == "" or "://" not in value:
        _require("/" not in value, f"{field} {_shown(value)} is not a base this cloud writes")
        return
    scheme = _url_parts(value, field)[0]
    if scheme == "sf":
        return
    if scheme == "file" and before_blobs:
        file_url(value, field)
        return
    web_url(value, field)


def _sha512(value: Any, field: str) -> None:
    _require(value is None or (isinstance(value, str) and bool(SHA512.fullmatch(value))),
             f"{field} {_shown(value)} is not a sha512 in hex")


def _number(value: Any, field: str) -> None:
    _require(value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)),
             f"{field} {_shown(value)} is not a number")


def _dict(raw: Any, what: str) -> dict[str, Any]:
    _require(isinstance(raw, dict), f"the {what} record is not a JSON object")
    return raw


def _same_key(value: Any, from_key: str, field: str) -> None:
    _require(value == from_key, f"{field} {_shown(value)} is not the {from_key!r} its key names")


def _parses(model: type[Record], raw: dict[str, Any]) -> None:
    try:
        model.from_dict(raw)
    except (TypeError, ValueError, AttributeError) as exc:
        raise BadRecord(f"the record does not fit {model.__name__}: {exc}") from None


# --- each kind of record --------------------------------------------------------------


def check_instance(key_uuid: str, raw: Any) -> None:
    spec = _dict(raw, "instance")
    _uuid(key_uuid, "the key's uuid")
    _same_key(spec.get("uuid"), key_uuid, "uuid")
    _valid(validation.hostname, spec.get("name"), "name")
    _valid(validation.namespace_name, spec.get("namespace"), "namespace")
    _node(spec.get("node"), "node")
    _int(spec.get("cpus"), "cpus", 1, validation.MAX_CPUS)
    _int(spec.get("memory"), "memory", validation.MIN_MEMORY_MIB, validation.MAX_MEMORY_MIB)
    _one_of(spec.get("desired", "active"), "desired", ("active", "deleted"))
    disks = spec.get("disks")
    _require(isinstance(disks, list) and 1 <= len(disks) <= validation.MAX_DISKS,
             f"disks must be a list of 1 to {validation.MAX_DISKS}")
    devices = [_disk(disk, f"disks[{n}]") for n, disk in enumerate(disks)]
    _require(len(set(devices)) == len(devices), f"two disks are {', '.join(devices)}")
    power = _dict(spec.get("power", {}), "power")
    _int(power.get("generation", 1), "power.generation", 0, 2**53)
    _one_of(power.get("action", "on"), "power.action", POWER_ACTIONS)
    _text(spec.get("ssh_key"), "ssh_key", optional=True, limit=MAX_SSH_KEY)
    user_data = spec.get("user_data")
    _require(user_data is None or (isinstance(user_data, str) and len(user_data) <= MAX_USER_DATA),
             "user_data is not base64 text of a sensible size")
    _text(spec.get("keypair"), "keypair", optional=True)
    _one_of(spec.get("configdrive", "openstack-disk"), "configdrive", ("openstack-disk", "none"))
    _require(isinstance(spec.get("video", {}), dict), "video is not an object")
    _require(isinstance(spec.get("metadata", {}), dict), "metadata is not an object")
    interfaces = spec.get("interfaces", [])
    _require(isinstance(interfaces, list) and len(interfaces) <= MAX_INTERFACES,
             f"interfaces must be a list of at most {MAX_INTERFACES}")
    for n, iface in enumerate(interfaces):
        _uuid(iface, f"interfaces[{n}]")
    _parses(InstanceSpec, spec)


def _disk(raw: Any, field: str) -> str:
    disk = _dict(raw, field)
    device = _device(disk.get("device"), f"{field}.device")
    _int(disk.get("size_gb"), f"{field}.size_gb", 1, validation.MAX_DISK_GB)
    _one_of(disk.get("bus", "virtio"), f"{field}.bus", BUSES)
    _one_of(disk.get("type", "disk"), f"{field}.type", DISK_TYPES)
    _text(disk.get("base"), f"{field}.base", optional=True, limit=MAX_URL)
    source = disk.get("source")
    if source is not None:
        _disk_source(_dict(source, f"{field}.source"), f"{field}.source")
    return device


def _disk_source(source: dict[str, Any], field: str) -> None:
    blob = source.get("blob_uuid", "")
    # Empty only in a record from before blobs (it names an image instead).
    before_blobs = blob == ""
    if not before_blobs:
        _uuid(blob, f"{field}.blob_uuid")
    _optional_uuid(source.get("artifact_uuid"), f"{field}.artifact_uuid")
    _optional_uuid(source.get("image_uuid"), f"{field}.image_uuid")
    base_reference(source.get("url", ""), f"{field}.url",
                   before_blobs=before_blobs and source.get("image_uuid") is not None)


def check_interface(key_uuid: str, raw: Any) -> None:
    iface = _dict(raw, "interface")
    _uuid(key_uuid, "the key's uuid")
    _same_key(iface.get("uuid"), key_uuid, "uuid")
    _uuid(iface.get("network_uuid"), "network_uuid")
    _uuid(iface.get("instance_uuid"), "instance_uuid")
    _valid(validation.namespace_name, iface.get("namespace"), "namespace")
    _int(iface.get("order"), "order", 0, MAX_INTERFACES - 1)
    mac = iface.get("macaddr")
    _require(isinstance(mac, str) and _valid(netvalidation.mac_address, mac, "macaddr") == mac,
             f"macaddr {_shown(mac)} is not a MAC address as the portal writes one")
    _ipv4(iface.get("ipv4"), "ipv4", optional=True)
    _valid(netvalidation.nic_model, iface.get("model", "virtio"), "model")
    _ipv4(iface.get("floating"), "floating", optional=True)
    if iface.get("node") is not None:
        _node(iface.get("node"), "node")
    _parses(InterfaceSpec, iface)


def check_network(key_uuid: str, raw: Any) -> None:
    net = _dict(raw, "network")
    _uuid(key_uuid, "the key's uuid")
    _same_key(net.get("uuid"), key_uuid, "uuid")
    _valid(netvalidation.network_name, net.get("name"), "name")
    _valid(validation.namespace_name, net.get("namespace"), "namespace")
    block = net.get("netblock")
    _require(isinstance(block, str) and str(_valid(netvalidation.netblock, block, "netblock"))
             == block, f"netblock {_shown(block)} is not a network as the portal writes one")
    _int(net.get("vxid"), "vxid", 1, MAX_VXID)
    _int(net.get("mtu", 1450), "mtu", 576, 9000)
    for flag in ("provide_dhcp", "provide_nat", "provide_dns"):
        if flag in net:
            _bool(net[flag], flag)
    _ipv4(net.get("floating_gateway"), "floating_gateway", optional=True)
    _one_of(net.get("desired", "active"), "desired", ("active", "deleted"))
    _require(isinstance(net.get("metadata", {}), dict), "metadata is not an object")
    _parses(NetworkSpec, net)


def check_artifact(key_uuid: str, raw: Any) -> None:
    artifact = _dict(raw, "artifact")
    _uuid(key_uuid, "the key's uuid")
    _same_key(artifact.get("uuid"), key_uuid, "uuid")
    _text(artifact.get("name"), "name", limit=MAX_URL)
    _valid(validation.namespace_name, artifact.get("namespace"), "namespace")
    _text(artifact.get("source_url"), "source_url", limit=MAX_URL)  # an index, never fetched
    _one_of(artifact.get("type", "image"), "type", storage.ARTIFACT_TYPES)
    _one_of(artifact.get("desired", "active"), "desired", DESIRED)
    for flag in ("shared", "precache"):
        if flag in artifact:
            _bool(artifact[flag], flag)
    _int(artifact.get("max_versions", 1), "max_versions", 1, MAX_VERSIONS)
    last = _int(artifact.get("last_index", 0), "last_index", 0, 2**53)
    versions = _dict(artifact.get("versions", {}), "versions")
    for index, blob in versions.items():
        _require(index.isascii() and index.isdigit() and 1 <= int(index) <= last,
                 f"versions has an index {_shown(index)} that is not from 1 to {last}")
        _uuid(blob, f"versions[{index}]")
    _optional_uuid(artifact.get("instance_uuid"), "instance_uuid")
    if artifact.get("device") is not None:
        _device(artifact["device"], "device")
    _require(isinstance(artifact.get("metadata", {}), dict), "metadata is not an object")
    _parses(Artifact, artifact)


def check_blob(key_uuid: str, raw: Any) -> None:
    blob = _dict(raw, "blob")
    _uuid(key_uuid, "the key's uuid")
    _same_key(blob.get("uuid"), key_uuid, "uuid")
    _valid(validation.namespace_name, blob.get("namespace"), "namespace")
    origin = blob.get("origin")
    _one_of(origin, "origin", BLOB_ORIGINS)
    url = blob.get("source_url")
    if origin == "file":
        # Read by every node itself: only where an operator pointed.
        file_url(url, "source_url")
    else:
        # Made on one node; the others copy it from a node holding it.
        _node(blob.get("node"), "node")
        if origin == "fetch":
            web_url(url, "source_url")
        elif url is not None:
            _text(url, "source_url", limit=MAX_URL)
            _require(url.startswith("sf://"),
                     f"source_url {_shown(url)}: {origin} blobs are fetched from nowhere")
    if blob.get("node") is not None:
        _node(blob["node"], "node")
    _optional_uuid(blob.get("replaces"), "replaces")
    _optional_uuid(blob.get("instance_uuid"), "instance_uuid")
    if blob.get("device") is not None:
        _device(blob["device"], "device")
    if origin == "snapshot":
        # Its disk is instance_uuid's device: a file in that instance's directory.
        _uuid(blob.get("instance_uuid"), "instance_uuid")
        _device(blob.get("device"), "device")
    if blob.get("size") is not None:
        _int(blob["size"], "size", 0, MAX_SIZE)
    _sha512(blob.get("sha512"), "sha512")
    _one_of(blob.get("desired", "active"), "desired", DESIRED)
    _require(isinstance(blob.get("metadata", {}), dict), "metadata is not an object")
    _parses(Blob, blob)


def check_observed_blob(node: str, key_uuid: str, raw: Any) -> None:
    observed = _dict(raw, "observed blob")
    _node(node, "the key's node")
    _uuid(key_uuid, "the key's uuid")
    _one_of(observed.get("state"), "state", BLOB_STATES)
    _sha512(observed.get("sha512"), "sha512")
    _int(observed.get("size", 0), "size", 0, MAX_SIZE)
    _int(observed.get("done", 0), "done", 0, MAX_SIZE)
    for field in ("total", "virtual_size"):
        if observed.get(field) is not None:
            _int(observed[field], field, 0, MAX_SIZE)
    _text(observed.get("format"), "format", optional=True)
    _require(observed.get("error") is None or isinstance(observed["error"], str),
             "error is not text")  # only ever shown
    _number(observed.get("modified"), "modified")
    _parses(BlobObserved, observed)


def check_upload(key_uuid: str, raw: Any) -> None:
    upload = _dict(raw, "upload")
    _uuid(key_uuid, "the key's uuid")
    _same_key(upload.get("uuid"), key_uuid, "uuid")
    _valid(validation.namespace_name, upload.get("namespace"), "namespace")
    _node(upload.get("node"), "node")
    _parses(Upload, upload)


def check_node(key_name: str, raw: Any) -> None:
    info = _dict(raw, "node")
    _node(key_name, "the key's node name")
    _same_key(info.get("name"), key_name, "name")
    _ip(info.get("ip"), "ip")
    _int(info.get("agent_port", 0), "agent_port", 0, 65535)
    _parses(NodeInfo, info)


def check_floating(key_address: str, raw: Any) -> None:
    reservation = _dict(raw, "floating address")
    _ipv4(key_address, "the key's address")
    _same_key(reservation.get("address"), key_address, "address")
    _parses(AddressReservation, reservation)


# --- paths made of record fields -----------------------------------------------------


def contained(directory: Path, name: str) -> Path:
    """``directory / name`` for a name that came from a record, refused
    (BadRecord) unless it stays inside ``directory`` once resolved: no
    separator, no ``..``, and no symlink already there that points out.
    The checks above make such a name impossible; this is the last word
    where a path is actually made."""
    _require(bool(name) and "/" not in name and name not in (".", "..") and "\0" not in name,
             f"{name!r} is not a plain file name")
    path = directory / name
    base = directory.resolve()
    _require(path.resolve().is_relative_to(base) and path.resolve() != base,
             f"{path} leads outside {base}")
    return path


# --- the gate -------------------------------------------------------------------------


class RecordGate:
    """The check each record must pass to be mirrored by the agent: None
    if it may be, else why not. Keys the agent does not act on pass."""

    def __init__(self, keys: Keys):
        self._keys = keys
        self._families: tuple[tuple[str, Callable[[str, Any], None]], ...] = (
            (keys.instances, check_instance),
            (keys.interfaces, check_interface),
            (keys.networks, check_network),
            (keys.artifacts, check_artifact),
            (keys.blobs, check_blob),
            (keys.uploads, check_upload),
            (keys.nodes, check_node),
            (keys.addresses(FLOATING_POOL), check_floating),
        )

    def __call__(self, key: str, value: bytes) -> str | None:
        try:
            self.check(key, value)
        except BadRecord as exc:
            return str(exc)
        return None

    def check(self, key: str, value: bytes) -> None:
        keys = self._keys
        if key == keys.network_node_role:
            _node(value.decode(errors="replace"), "the network node")
            return
        if key.startswith(keys.observed_blobs):
            node, _, uuid = key[len(keys.observed_blobs):].partition("/")
            check_observed_blob(node, uuid, _json(value))
            return
        for family, check in self._families:
            if key.startswith(family):
                # A deeper key would still be listed with the family's records.
                name = keys.uuid_of(key, family)
                _require(name is not None, f"{key!r} is not where a record is kept")
                check(str(name), _json(value))
                return


def _json(value: bytes) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        raise BadRecord("the record is not JSON") from None


def claimed_node(value: bytes) -> str | None:
    """The node a refused instance record names, if it names one at all
    (a record can fail its checks and still say where it belongs)."""
    try:
        node = json.loads(value).get("node")
    except (ValueError, AttributeError):
        return None
    return node if isinstance(node, str) else None
