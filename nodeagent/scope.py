"""What a node agent follows of etcd: its own node's share, not the cloud.

An agent mirrors the families it acts on that do not grow with the number of
instances (nodes, images and blobs, networks and their fences, reservations,
roles, security groups and address sets), and of the instances only its own
node's: the copies of their records kept
under ``on/<node>/`` (cloudstate.keys), which it reads as the records
themselves. So an agent holding 100 instances holds the same whether the
cloud has 100 or 10,000. The network node's role needs every instance's
name (its DNS), so an agent that may take that role follows every desired
record instead.

Interfaces (and what their nodes report of their filtering), addresses and
MACs are still followed whole: each node's mesh needs to know which other
nodes have a port on its networks, and its security groups the addresses of
every member of a group its rules name.
"""

from __future__ import annotations

from cloudstate.keys import Keys
from cloudstate.scopedmirror import Part


def parts(keys: Keys, node: str, *, network_node: bool) -> list[Part]:
    shared = [keys.nodes, keys.alive, keys.artifacts, keys.blobs, keys.observed_blobs,
              keys.uploads, keys.networks, keys.observed_networks, keys.interfaces,
              keys.observed_interfaces, keys.security_groups, keys.address_sets,
              keys.ipam, keys.vxlans, keys.macs, keys.fences("networks"), keys.roles]
    instances = (Part(keys.instances) if network_node
                 else Part(keys.node_instances(node), shown_as=keys.instances))
    observed = Part(keys.node_observed(node), shown_as=keys.observed_instances)
    return [*(Part(prefix) for prefix in shared), instances, observed]
