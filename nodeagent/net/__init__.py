"""This node's share of the cloud's virtual networks (a VXLAN mesh, as
Shaken Fist has it), made to match etcd by ``reconciler``.

The parts, each a module with one job:

    reconciler   the coordinator: what to look at, one pass of one network, retries
    mesh         every node: a network's bridge, VXLAN interface, flood list, taps
    role         whether this node is the network node
    router       the network node: namespace, router address, dnsmasq, teardown
    egress       the network node: NAT and floating addresses through the uplink
    report       the network node: a network's observed record and events
    releases     what is given back to etcd, and when
    secgroups    every node: its guests' security groups and anti-spoofing, in
                 force before their first packet, reported per interface
    ports        what the instance reconciler asks for one instance
    gc           kernel objects of this cloud that nothing wants
    snapshot     what etcd asks, read from the mirror at once
    context      what this node is (fixed for the agent's life)

and the tools they drive: ``kernel`` (links, namespaces, addresses through
netlink), ``names`` (every kernel object's name, tagged per cloud),
``dnsmasq``, ``nftables`` and ``networkdata`` (a config drive's view of the
NICs); for the security groups, ``policy`` (what the node's filter must do,
from etcd), ``filterrules`` (that as nftables, whole or as changes),
``firewall`` (applied, and tracked connections judged) and ``conntrack``.
"""
