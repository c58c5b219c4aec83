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
                            disks[].device: a file name in that directory, the
                            XML target, an nvme disk's QEMU arguments; size_gb:
                            qemu-img's size; bus, type: XML; source.blob_uuid: a
                            file name in the blob store and the image cache;
                            source.url: the base as the user gave it, in messages
                            only (never fetched: the blob says what is);
                            nvram_template: a blob, as a disk's source; uefi,
                            secure_boot: which OVMF files; machine_type: XML;
                            name: XML, the config drive's hostname, DNS in dnsmasq;
                            node: whether it is ours; interfaces: keys read next
                            (one dropped from the list is unplugged: hot plug)
    interfaces/<uuid>       uuid: the tap's name; macaddr, model: XML, dnsmasq's
                            hosts file; ipv4, floating: dnsmasq and nftables;
                            order: the NIC's place, ethN in network_data.json;
                            security_groups: chain names; allowed_addresses: nftables
    observed/interfaces/<u> groups: chain names compared with what is applied
    secgroups/<uuid>        uuid, rules[].remote_group, remote_address_set: chain and
                            set names; rules: nftables (each checked as the API does)
    addrsets/<uuid>         uuid: a set's name; cidrs: its elements
    networks/<uuid>         vxid: link names and the VXLAN id; netblock: addresses,
                            routes, dnsmasq ranges, nftables; mtu: links;
                            floating_gateway, routed: addresses, routes, proxy
                            neighbours, nftables; dns_entries: dnsmasq's names
                            file; name: logs, events
    artifacts/<uuid>        versions: the blobs to hold (file names); precache
    blobs/<uuid>            uuid: a file name; origin and source_url: what is fetched
                            (http(s) for a fetch; file:// only for a file an operator
                            registered, origin file); device: a file name in an
                            instance directory (snapshots); node, instance_uuid: keys
    observed/blobs/<n>/<u>  sha512: compared with what is copied from node n
    uploads/<uuid>          uuid: a file name in the upload directory; node: ours?
    nodes/<name>            ip: VXLAN peers (kernel), the URL of its agent's server;
                            agent_port: that URL; firmware: only compared
    ipam/floating/<addr>    address: nftables; type, user: whether still in use
    ipam/<network>/<addr>   user: whether still the interface's, to give back
                            (an unplugged NIC's, a deleted instance's)
    macs/<mac>, vxlan/<id>  the interface or network holding it: compared
    observed/instances/<u>  read back by the agent that wrote it (power, errors)
    observed/networks/<u>   applied: which interfaces may start; read whole by
                            the network node, so one bad record must not stop it
    roles/network-node      the node's name: compared with ours

The agent writes ``deleted/interfaces/`` and never reads it, and does not
read the portal's ``nodespecs/`` (node metadata): those pass untouched.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import uuid as uuidlib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from cloudstate import disklayout, netvalidation, secgroups, storage, validation
from cloudstate.keys import FLOATING_POOL, Keys
from cloudstate.model import (
    AddressReservation,
    AddressSet,
    Artifact,
    Blob,
    BlobObserved,
    InstanceObserved,
    InstanceSpec,
    InterfaceObserved,
    InterfaceSpec,
    NetworkObserved,
    NetworkSpec,
    NodeInfo,
    Record,
    SecurityGroup,
    SecurityRule,
    Upload,
)
from cloudstate.power import API_ACTIONS

# vda, sdc, nvme0, and hdc in records from before IDE was dropped (the
# names cloudstate.disklayout gives a bus's disks); never a path.
DEVICE = re.compile(r"(?:vd|sd|hd)[a-z]{1,2}|nvme[0-9]")
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
SHA512 = re.compile(r"[0-9a-f]{128}")
# QEMU machine types: pc, q35, pc-i440fx-7.2...
MACHINE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
# Records from before IDE was dropped kept their cdroms there.
BUSES = (*disklayout.BUSES, "ide")
DISK_TYPES = disklayout.TYPES
FIRMWARE = ("uefi", "secure-boot")  # what a node offers (nodeagent.firmware)
MAX_VXID = 2**24 - 1
MAX_TEXT = 255
MAX_URL = 2048
MAX_USER_DATA = 1024 * 1024  # base64 of the API's 64 KiB with ample room
MAX_SSH_KEY = 16 * 1024
MAX_INTERFACES = 16
# A NIC hot-plugged in takes the next order (portal.cloud.hotplug); past
# this, the lowest free one.
MAX_INTERFACE_ORDER = netvalidation.MAX_INTERFACE_ORDER
# Routed addresses of one network: more than its record could hold in etcd.
MAX_ROUTED = 65536
BLOB_STATES = ("downloading", "creating", "ready", "error")
BLOB_ORIGINS = ("fetch", "snapshot", "upload", "file")
DESIRED = ("active", "deleted")
MAX_SIZE = 2**62
MAX_VERSIONS = 1000
POWER_ACTIONS = tuple(API_ACTIONS.values())
# The most rules a group may have (SFCLOUD_RULES_PER_SECURITY_GROUP's ceiling).
MAX_RULES = 1000
FILTERING_STATES = ("created", "error")
FLOATING_TYPES = ("floating", "gateway", "routed")


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
    configdrive = spec.get("configdrive", "openstack-disk")
    _one_of(configdrive, "configdrive", ("openstack-disk", "none"))
    if configdrive != "none":
        first = disks[0]
        taken = disklayout.config_drive(disklayout.Placed(
            first["device"], first.get("bus", "virtio"), first.get("type", "disk"))).device
        for n, device in enumerate(devices):
            _require(device != taken, f"disks[{n}].device {device} is the config drive's")
    _firmware(spec)
    if spec.get("machine_type") is not None:
        machine = spec["machine_type"]
        _require(isinstance(machine, str) and bool(MACHINE.fullmatch(machine)),
                 f"machine_type {_shown(machine)} is not a QEMU machine type")
    power = _dict(spec.get("power", {}), "power")
    _int(power.get("generation", 1), "power.generation", 0, 2**53)
    _one_of(power.get("action", "on"), "power.action", POWER_ACTIONS)
    _text(spec.get("ssh_key"), "ssh_key", optional=True, limit=MAX_SSH_KEY)
    user_data = spec.get("user_data")
    _require(user_data is None or (isinstance(user_data, str) and len(user_data) <= MAX_USER_DATA),
             "user_data is not base64 text of a sensible size")
    _text(spec.get("keypair"), "keypair", optional=True)
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


def _firmware(spec: dict[str, Any]) -> None:
    """UEFI, secure boot on top, and the blob that starts the variable
    store: as the portal writes them, only with UEFI."""
    uefi, secure = spec.get("uefi", False), spec.get("secure_boot", False)
    _bool(uefi, "uefi")
    _bool(secure, "secure_boot")
    _require(uefi or not secure, "secure_boot is asked for without uefi")
    template = spec.get("nvram_template")
    if template is None:
        return
    _require(uefi, "nvram_template is given without uefi")
    source = _dict(template, "nvram_template")
    _uuid(source.get("blob_uuid"), "nvram_template.blob_uuid")  # never from before blobs
    _disk_source(source, "nvram_template")


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
    _int(iface.get("order"), "order", 0, MAX_INTERFACE_ORDER)
    mac = iface.get("macaddr")
    _require(isinstance(mac, str) and _valid(netvalidation.mac_address, mac, "macaddr") == mac,
             f"macaddr {_shown(mac)} is not a MAC address as the portal writes one")
    _ipv4(iface.get("ipv4"), "ipv4", optional=True)
    _valid(netvalidation.nic_model, iface.get("model", "virtio"), "model")
    _ipv4(iface.get("floating"), "floating", optional=True)
    if iface.get("node") is not None:
        _node(iface.get("node"), "node")
    _security_groups(iface.get("security_groups", []), "security_groups")
    _bool(iface.get("port_security", True), "port_security")
    _cidr_list(iface.get("allowed_addresses", []), "allowed_addresses",
               secgroups.MAX_ALLOWED_ADDRESSES)
    _parses(InterfaceSpec, iface)


def _security_groups(value: Any, field: str) -> None:
    limit = secgroups.MAX_GROUPS_PER_INTERFACE
    _require(isinstance(value, list) and len(value) <= limit,
             f"{field} must be a list of at most {limit} security groups")
    for n, uuid in enumerate(value):
        _uuid(uuid, f"{field}[{n}]")


def _cidr_list(value: Any, field: str, limit: int) -> None:
    """CIDRs as the portal writes them: checked, canonical, sorted, once each."""
    _require(isinstance(value, list), f"{field} is not a list of CIDR blocks")
    canonical = list(_valid(partial(secgroups.cidrs, limit=limit), value, field))
    _require(canonical == value, f"{field} {_shown(value)} is not CIDR blocks as the portal "
                                 "writes them (canonical, sorted, each once)")


def check_observed_interface(key_uuid: str, raw: Any) -> None:
    observed = _dict(raw, "observed interface")
    _uuid(key_uuid, "the key's uuid")
    _node(observed.get("node"), "node")
    _one_of(observed.get("state", "created"), "state", FILTERING_STATES)
    _require(observed.get("error") is None or isinstance(observed["error"], str),
             "error is not text")  # only ever shown
    groups = _dict(observed.get("groups", {}), "groups")
    _require(len(groups) <= secgroups.MAX_GROUPS_PER_INTERFACE,
             f"groups names more than {secgroups.MAX_GROUPS_PER_INTERFACE} security groups")
    for uuid, generation in groups.items():
        _uuid(uuid, "groups' uuid")
        _int(generation, f"groups[{uuid}]", 1, 2**53)
    _bool(observed.get("port_security", True), "port_security")
    _cidr_list(observed.get("allowed_addresses", []), "allowed_addresses",
               secgroups.MAX_ALLOWED_ADDRESSES)
    _number(observed.get("applied_at"), "applied_at")
    _parses(InterfaceObserved, observed)


def check_security_group(key_uuid: str, raw: Any) -> None:
    group = _dict(raw, "security group")
    _uuid(key_uuid, "the key's uuid")
    _same_key(group.get("uuid"), key_uuid, "uuid")
    _valid(lambda value, field: secgroups.name(value, "security group", field),
           group.get("name"), "name")
    _valid(validation.namespace_name, group.get("namespace"), "namespace")
    _valid(secgroups.description, group.get("description", ""), "description")
    _int(group.get("generation", 1), "generation", 1, 2**53)
    _require(isinstance(group.get("metadata", {}), dict), "metadata is not an object")
    rules = group.get("rules", [])
    _require(isinstance(rules, list) and len(rules) <= MAX_RULES,
             f"rules must be a list of at most {MAX_RULES}")
    for n, rule in enumerate(rules):
        _rule(rule, f"rules[{n}]")
    _parses(SecurityGroup, group)


def _rule(raw: Any, field: str) -> None:
    """A stored rule: its remote ends by uuid, and exactly what the API's
    check makes of it (cloudstate.secgroups), so a port list, protocol or
    CIDR reaches nftables only in the form the portal writes."""
    rule = _dict(raw, field)
    _uuid(rule.get("uuid"), f"{field}.uuid")
    _optional_uuid(rule.get("remote_group"), f"{field}.remote_group")
    _optional_uuid(rule.get("remote_address_set"), f"{field}.remote_address_set")
    _require(isinstance(rule.get("remote_cidrs", []), list),
             f"{field}.remote_cidrs is not a list of CIDR blocks")
    remotes = [name for name in ("remote_cidrs", "remote_group", "remote_address_set")
               if rule.get(name)]
    _require(len(remotes) <= 1, f"{field} has {' and '.join(remotes)}: a rule has one remote end")
    _number(rule.get("created_at"), f"{field}.created_at")
    try:
        secgroups.recheck(SecurityRule.from_dict(rule))
    except (TypeError, ValueError, AttributeError) as exc:
        raise BadRecord(f"{field}: {exc}") from None


def check_address_set(key_uuid: str, raw: Any) -> None:
    address_set = _dict(raw, "address set")
    _uuid(key_uuid, "the key's uuid")
    _same_key(address_set.get("uuid"), key_uuid, "uuid")
    _valid(lambda value, field: secgroups.name(value, "address set", field),
           address_set.get("name"), "name")
    _valid(validation.namespace_name, address_set.get("namespace"), "namespace")
    _valid(secgroups.description, address_set.get("description", ""), "description")
    _int(address_set.get("generation", 1), "generation", 1, 2**53)
    _require(isinstance(address_set.get("metadata", {}), dict), "metadata is not an object")
    _cidr_list(address_set.get("cidrs", []), "cidrs", secgroups.MAX_ADDRESS_SET_CIDRS)
    _parses(AddressSet, address_set)


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
    routed = net.get("routed", [])
    _require(isinstance(routed, list) and len(routed) <= MAX_ROUTED,
             f"routed must be a list of at most {MAX_ROUTED} addresses")
    for n, address in enumerate(routed):
        _ipv4(address, f"routed[{n}]")
    _require(len(set(routed)) == len(routed), "routed lists an address twice")
    _dns_entries(net.get("dns_entries", {}))
    _one_of(net.get("desired", "active"), "desired", ("active", "deleted"))
    _require(isinstance(net.get("metadata", {}), dict), "metadata is not an object")
    _parses(NetworkSpec, net)


def _dns_entries(raw: Any) -> None:
    """name -> address, each a line of dnsmasq's names file: a DNS name as
    the portal keeps it (lower case, no final dot) and an IP address."""
    entries = _dict(raw, "dns_entries")
    _require(len(entries) <= netvalidation.MAX_DNS_ENTRIES,
             f"dns_entries has more than {netvalidation.MAX_DNS_ENTRIES} names")
    for name, address in entries.items():
        _require(_valid(validation.dns_name, name, "dns_entries") == name,
                 f"dns_entries has a name {_shown(name)} the portal would not write")
        _ip(address, f"dns_entries[{name}]")


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
    offered = info.get("firmware", [])
    _require(isinstance(offered, list) and all(name in FIRMWARE for name in offered),
             f"firmware {_shown(offered)} is not a list of {', '.join(FIRMWARE)}")
    _parses(NodeInfo, info)


def check_floating(key_address: str, raw: Any) -> None:
    reservation = _dict(raw, "floating address")
    _ipv4(key_address, "the key's address")
    _same_key(reservation.get("address"), key_address, "address")
    # What holds it: an interface floated, or a network's NAT or routed address.
    kind = reservation.get("type")
    _one_of(kind, "type", FLOATING_TYPES)
    user = reservation.get("user")
    holder = "interface" if kind == "floating" else "network"
    _require(isinstance(user, list) and len(user) == 2 and user[0] == holder,
             f"user {_shown(user)} is not [{holder!r}, <uuid>]")
    _uuid(user[1], "user[1]")
    _uuid(reservation.get("network_uuid"), "network_uuid")
    _parses(AddressReservation, reservation)


def check_pool_address(pool: str, key_address: str, raw: Any) -> None:
    """An address of a network's own range, held by one of its interfaces
    (cloudstate.ipam as portal.cloud.interfaces reserves it)."""
    reservation = _dict(raw, "address")
    _uuid(pool, "the key's network")
    _ipv4(key_address, "the key's address")
    _same_key(reservation.get("address"), key_address, "address")
    _one_of(reservation.get("type"), "type", ("instance",))
    user = reservation.get("user")
    _require(isinstance(user, list) and len(user) == 2 and user[0] == "interface",
             f"user {_shown(user)} is not ['interface', <uuid>]")
    _uuid(user[1], "user[1]")
    _same_key(reservation.get("network_uuid"), pool, "network_uuid")
    _text(reservation.get("comment", ""), "comment")
    _parses(AddressReservation, reservation)


def check_holder(value: bytes, what: str) -> None:
    """A MAC's or VXLAN id's claim: the uuid of the interface or network
    holding it, nothing else."""
    try:
        holder = value.decode("ascii")
    except UnicodeDecodeError:
        raise BadRecord(f"the {what} names no uuid") from None
    _uuid(holder, f"the {what}")


def check_observed_instance(key_uuid: str, raw: Any) -> None:
    observed = _dict(raw, "observed instance")
    _uuid(key_uuid, "the key's uuid")
    _node(observed.get("node"), "node")
    for field in ("state", "power_state"):
        if field in observed:
            _text(observed[field], field, limit=32)
    _require(observed.get("error") is None or isinstance(observed["error"], str),
             "error is not text")  # only ever shown
    for field in ("applied_power_generation", "failed_spec_revision"):
        _int(observed.get(field, 0), field, 0, 2**63)
    _number(observed.get("updated_at"), "updated_at")
    _parses(InstanceObserved, observed)


def check_observed_network(key_uuid: str, raw: Any) -> None:
    observed = _dict(raw, "observed network")
    _uuid(key_uuid, "the key's uuid")
    _node(observed.get("node"), "node")
    _text(observed.get("state", "created"), "state", limit=32)
    _require(observed.get("error") is None or isinstance(observed["error"], str),
             "error is not text")
    applied = observed.get("applied", [])
    _require(isinstance(applied, list), "applied is not a list of interfaces")
    for n, iface in enumerate(applied):
        _uuid(iface, f"applied[{n}]")
    _bool(observed.get("egress", False), "egress")
    _number(observed.get("updated_at"), "updated_at")
    _parses(NetworkObserved, observed)


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
            (keys.observed_interfaces, check_observed_interface),
            (keys.security_groups, check_security_group),
            (keys.address_sets, check_address_set),
            (keys.networks, check_network),
            (keys.artifacts, check_artifact),
            (keys.blobs, check_blob),
            (keys.uploads, check_upload),
            (keys.nodes, check_node),
            (keys.observed_instances, check_observed_instance),
            (keys.observed_networks, check_observed_network),
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
        if key.startswith(keys.ipam):
            pool, _, address = key[len(keys.ipam):].partition("/")
            _require(bool(pool) and bool(address) and "/" not in address,
                     f"{key!r} is not where a record is kept")
            if pool == FLOATING_POOL:
                check_floating(address, _json(value))
            else:
                check_pool_address(pool, address, _json(value))
            return
        for family, what in ((keys.macs, "MAC's holder"), (keys.vxlans, "VXLAN id's holder")):
            if key.startswith(family):
                check_holder(value, what)
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
