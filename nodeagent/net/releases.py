"""What the network code gives back to etcd, and when.

A reservation is released only once nothing on the machines can still use
it, in the same transaction that reports the reason:

- an instance's interfaces, addresses and MACs, when its guest is gone
  (``of_instance``, with the instance's deleted record);
- a deleted network's VXLAN id, addresses, floating addresses and fence,
  when its namespace is gone (``of_network``, with the network's deleted
  record);
- a floating address, once the network node has removed its NAT
  (``unused_floating``).

Each function only reads; the caller writes.
"""

from __future__ import annotations

from cloudstate.etcd import Delete
from cloudstate.keys import Keys
from cloudstate.mirror import MirrorView
from cloudstate.model import AddressReservation, InstanceSpec, InterfaceSpec, NetworkSpec
from nodeagent.net.snapshot import Snapshot


def of_instance(keys: Keys, mirror: MirrorView, spec: InstanceSpec) -> list[Delete]:
    """Its interfaces, their addresses and MACs. Floating addresses stay
    reserved until the network node has removed their NAT."""
    found: list[Delete] = []
    for uuid in spec.interfaces:
        kv = mirror.get(keys.interface(uuid))
        if kv is None:
            continue
        iface = InterfaceSpec.from_json(kv.value)
        found.append(Delete(keys.interface(uuid)))
        address = mirror.get(keys.address(iface.network_uuid, iface.ipv4 or ""))
        if iface.ipv4 is not None and address is not None and \
                AddressReservation.from_json(address.value).user[-1] == uuid:
            found.append(Delete(keys.address(iface.network_uuid, iface.ipv4)))
        mac = mirror.get(keys.mac(iface.macaddr))
        if mac is not None and mac.value.decode() == uuid:
            found.append(Delete(keys.mac(iface.macaddr)))
    return found


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
        else:
            iface = snap.interfaces.get(reservation.user[-1])
            in_use = iface is not None and iface.floating == reservation.address
        if not in_use:
            unused.append((key, revision))
    return unused
