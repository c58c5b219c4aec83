"""The config drive's network_data.json: each NIC as cloud-init reads it.

cloud-init's ConfigDrive source renders this into the guest's own network
configuration (netplan, ENI, ...), so a guest is configured even without
DHCP. NICs are listed in order, so the first is eth0; a NIC with an address
gets it statically, and the first such NIC carries the default route
through its network's router, as Shaken Fist does.
"""

from __future__ import annotations

from typing import Any

from cloudstate.model import InterfaceSpec, NetworkSpec


def build(nics: list[tuple[InterfaceSpec, NetworkSpec]],
          upstream_dns: tuple[str, ...] = ()) -> dict[str, Any]:
    """``upstream_dns``: the cloud's resolvers, for guests whose networks
    answer no names of their own."""
    links: list[dict[str, Any]] = []
    networks: list[dict[str, Any]] = []
    services: list[dict[str, Any]] = []
    default_route_given = False
    for iface, network in sorted(nics, key=lambda pair: pair[0].order):
        link_id = f"eth{iface.order}"
        links.append({
            "id": link_id,
            "name": link_id,
            "type": "vif",
            "ethernet_mac_address": iface.macaddr,
            "mtu": network.mtu,
            "vif_id": iface.uuid,
        })
        if iface.ipv4 is None:
            continue
        entry: dict[str, Any] = {
            "id": f"network{iface.order}",
            "link": link_id,
            "type": "ipv4",
            "ip_address": iface.ipv4,
            "netmask": network.netmask,
            "network_id": network.uuid,
            "routes": [],
        }
        if not default_route_given:
            entry["routes"].append(
                {"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": network.router}
            )
            default_route_given = True
        networks.append(entry)
        if network.provide_dns and not services:
            services.append({"type": "dns", "address": network.router})
    if networks and not services:
        services = [{"type": "dns", "address": address} for address in upstream_dns]
    return {"links": links, "networks": networks, "services": services}
