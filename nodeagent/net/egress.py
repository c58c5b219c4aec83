"""The network node's way out: NAT and floating addresses through the uplink.

Only through an uplink the operator named (SFCLOUD_UPLINK), and never one
that carries the node's own addresses or default route. Each network that
needs it gets a veth from the uplink bridge into its namespace, holding its
floating addresses, and one nftables table (``nftables``) that maps them to
guests and lets the rest of the network out with the network's gateway
address. Separate from the router because it is optional (no uplink, no
egress) and is the only part that touches a network outside the cloud.

The calls here block; callers run them in a worker thread while holding the
kernel lock.
"""

from __future__ import annotations

from cloudstate.model import InterfaceSpec, NetworkSpec
from nodeagent.net import kernel, nftables
from nodeagent.net.context import NetworkContext
from nodeagent.net.kernel import Address, KernelError, Route
from nodeagent.net.names import EGRESS, INSIDE
from nodeagent.net.snapshot import Snapshot

UPLINK_MTU = 1500


class Egress:
    def __init__(self, context: NetworkContext):
        self._ctx = context

    def wanted(self, spec: NetworkSpec, ifaces: list[InterfaceSpec]) -> bool:
        if not self._ctx.uplink or self._ctx.floating is None:
            return False
        return bool(spec.floating_gateway) or bool(spec.routed) \
            or any(i.floating and i.ipv4 for i in ifaces)

    def wanted_by_any(self, snap: Snapshot) -> bool:
        """Whether any network still alive needs the uplink bridge."""
        return any(self.wanted(spec, snap.on(spec.uuid))
                   for spec, _ in snap.networks.values() if snap.alive(spec))

    def build(self, spec: NetworkSpec, ifaces: list[InterfaceSpec]) -> bool:
        """NAT and floating addresses in the namespace; True if the rules changed."""
        names, ctx = self._ctx.names, self._ctx
        assert ctx.floating is not None and ctx.floating_router is not None
        if kernel.is_default_route_link(ctx.uplink):
            raise KernelError(
                f"the uplink {ctx.uplink} carries this node's own addresses or default route; "
                "NAT and floating addresses need an interface of their own (SFCLOUD_UPLINK)"
            )
        uplink_bridge = names.uplink_bridge
        kernel.ensure_bridge(uplink_bridge, UPLINK_MTU)
        if not kernel.enslave(ctx.uplink, uplink_bridge):
            raise KernelError(f"the uplink {ctx.uplink} does not exist on {ctx.node}")
        namespace = names.netns(spec.vxid)
        kernel.ensure_veth_into(names.egress(spec.vxid), namespace, EGRESS,
                                bridge=uplink_bridge, mtu=UPLINK_MTU)
        floats = [(i.floating, i.ipv4) for i in ifaces if i.floating and i.ipv4]
        addresses = [Address(address, 32) for address, _ in floats]
        if spec.floating_gateway:
            addresses.append(Address(spec.floating_gateway, 32))
        added = kernel.configure_inside(
            namespace, EGRESS, mtu=UPLINK_MTU, addresses=addresses,
            routes=[Route(str(ctx.floating)), Route("default", ctx.floating_router)],
        )
        kernel.announce(namespace, EGRESS, [a.address for a in added])
        kernel.set_forwarding(namespace, True)
        # Routed addresses: to the guests' side as they are, and answered
        # for on the uplink's side.
        routed = set(spec.routed)
        kernel.ensure_host_routes(namespace, INSIDE, routed)
        kernel.ensure_proxy_neighbours(namespace, EGRESS, routed)
        return nftables.apply(namespace, nftables.EgressRules(
            table=names.nft_table,
            netblock=spec.netblock,
            gateway=spec.floating_gateway if spec.provide_nat else None,
            floating=tuple(nftables.Floating(floating, private)
                           for floating, private in sorted(floats)),
            routed=tuple(sorted(routed)),
        ))

    def remove(self, spec: NetworkSpec) -> None:
        names = self._ctx.names
        namespace = names.netns(spec.vxid)
        kernel.delete_link(names.egress(spec.vxid))
        if namespace in kernel.namespaces(names.netns_prefix):
            kernel.ensure_host_routes(namespace, INSIDE, set())
            nftables.remove(namespace, names.nft_table)
            kernel.set_forwarding(namespace, False)

    def remove_uplink_bridge(self) -> bool:
        return kernel.delete_link(self._ctx.names.uplink_bridge)
