"""Choosing NIC addresses for one create, over a real etcd: a NIC given any
free address is never handed one that another NIC of the same request names
(sf-client's `-f web -n web@10.0.0.50` failed with 409 whenever the first
NIC's random pick happened to be .50)."""

from __future__ import annotations

from cloudstate.model import NetworkSpec
from portal.cloud import interfaces
from portal.cloud.interfaces import NicRequest, Resolved
from portal.cloud.networks import NetworkRecord


async def test_an_address_named_by_one_nic_is_not_picked_for_another(portal_etcd: None) -> None:
    # A /29 leaves five addresses; one is named, so any pick of the other
    # NIC that ignored the request would hit it one time in five.
    network = NetworkRecord(spec=NetworkSpec(uuid="n-plan", name="tiny", namespace="system",
                                             netblock="10.9.0.0/29", vxid=77),
                            observed=None, revision=1)
    nics = [NicRequest(network="tiny"), NicRequest(network="tiny", address="10.9.0.4")]
    resolved = [Resolved(network, groups=[]), Resolved(network, groups=[])]
    for attempt in range(40):
        plan = await interfaces.plan(nics, resolved,
                                     instance_uuid=f"i-{attempt}", namespace="system",
                                     node="node-a")
        addresses = [iface.ipv4 for iface in plan.interfaces]
        assert addresses[1] == "10.9.0.4"
        assert addresses[0] != "10.9.0.4"
