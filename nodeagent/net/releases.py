"""What the network code gives back to etcd, and when.

A reservation is released only once nothing on the machines can still use
it, in the same transaction that reports the reason:

- an instance's interfaces, addresses and MACs, when its guest is gone
  (``of_instance``, with the instance's deleted record); each interface
  leaves a copy under ``deleted/interfaces/`` so it stays readable, state
  deleted, for as long as its instance is (the portal forgets both);
- an interface unplugged from a running instance, once the guest let go
  of it (``of_interface``);
- a deleted network's VXLAN id, addresses, floating addresses and fence,
  when its namespace is gone (``of_network``, with the network's deleted
  record);
- a floating address, once the network node has removed its NAT
  (``unused_floating``).

Each function only reads; the caller writes.
"""

from __future__ import annotations

from cloudstate.etcd import Delete, Put
from cloudstate.keys import Keys
from cloudstate.mirror import MirrorView
from cloudstate.model import AddressReservation, InstanceSpec, InterfaceSpec, NetworkSpec
from nodeagent.net.snapshot import Snapshot


def of_instance(keys: Keys, mirror: MirrorView, spec: InstanceSpec) -> list[Put | Delete]:
    """Its interfaces (each leaving a copy to read), their addresses and
    MACs, and those of interfaces unplugged from it and not yet given back.
    Floating addresses stay reserved until the network node has removed
    their NAT."""
    found: list[Put | Delete] = []
    for uuid in spec.interfaces:
        kv = mirror.get(keys.interface(uuid))
        if kv is not None:
            found += of_interface(keys, mirror, InterfaceSpec.from_json(kv.value), keep=True)
    for iface in detached(keys, mirror, spec):
        found += of_interface(keys, mirror, iface, keep=False)
    return found


def of_interface(keys: Keys, mirror: MirrorView, iface: InterfaceSpec, *,
                 keep: bool) -> list[Put | Delete]:
    """One interface's record (a copy left to read if ``keep``) and its
    filtering's report, its address and its MAC, each only if still the
    interface's own."""
    found: list[Put | Delete] = [Delete(keys.interface(iface.uuid))]
    if keep:
        found.append(Put(keys.deleted_interface(iface.uuid), iface.to_json()))
    if mirror.get(keys.observed_interface(iface.uuid)) is not None:
        # What its node reported of its filtering goes with it.
        found.append(Delete(keys.observed_interface(iface.uuid)))
    address = mirror.get(keys.address(iface.network_uuid, iface.ipv4 or ""))
    if iface.ipv4 is not None and address is not None and \
            AddressReservation.from_json(address.value).user[-1] == iface.uuid:
        found.append(Delete(keys.address(iface.network_uuid, iface.ipv4)))
    mac = mirror.get(keys.mac(iface.macaddr))
    if mac is not None and mac.value.decode() == iface.uuid:
        found.append(Delete(keys.mac(iface.macaddr)))
    return found


def detached(keys: Keys, mirror: MirrorView, spec: InstanceSpec) -> list[InterfaceSpec]:
    """Interfaces of the instance that it no longer lists (unplugged). What
    it lists is read from the mirror with them: ``spec`` may be older than a
    NIC hot-plugged since, whose record the mirror already has."""
    current = mirror.get(keys.instance(spec.uuid))
    listed = set(spec.interfaces if current is None
                 else InstanceSpec.from_json(current.value).interfaces)
    return sorted((iface for iface in (InterfaceSpec.from_json(kv.value)
                                       for kv in mirror.items(keys.interfaces))
                   if iface.instance_uuid == spec.uuid and iface.uuid not in listed),
                  key=lambda iface: iface.order)


def of_network(keys: Keys, mirror: MirrorView, snap: Snapshot, spec: NetworkSpec) -> list[Delete]:
    """What a deleted network still holds: its VXLAN id (if still its own),
    its addresses, its floating addresses and its fence."""
    releases: list[Delete] = []
    vxid_kv = mirror.get(keys.vxlan(spec.vxid))
    if vxid_kv is not None and vxid_kv.value.decode() == spec.uuid:
        releases.append(Delete(keys.vxlan(spec.vxid)))
    if any(True for _ in mirror.items(keys.addresses(spec.uuid))):
        releases.append(Delete(keys.addresses(spec.uuid), prefix=True))
    releases += [Delete(key) for key, (r, _) in snap.floating.items()
                 if r.network_uuid == spec.uuid]
    if mirror.get(keys.network_fence(spec.uuid)) is not None:
        releases.append(Delete(keys.network_fence(spec.uuid)))
    return releases


def unused_floating(snap: Snapshot, spec: NetworkSpec) -> list[tuple[str, int]]:
    """The floating reservations of the network that nothing in it uses any
    more, as (key, mod_revision): freed only if unchanged since."""
    unused = []
    for key, (reservation, revision) in snap.floating.items():
        if reservation.network_uuid != spec.uuid:
            continue
        if reservation.type == "gateway":
            in_use = spec.floating_gateway == reservation.address
        elif reservation.type == "routed":
            # Given back once unrouted and its route gone (this pass removed it).
            in_use = reservation.address in spec.routed
        else:
            iface = snap.interfaces.get(reservation.user[-1])
            in_use = iface is not None and iface.floating == reservation.address
        if not in_use:
            unused.append((key, revision))
    return unused
