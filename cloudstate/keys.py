"""Where every object lives in etcd.

One writer per key family, so no two processes ever race on a key:

    <prefix>/instances/<uuid>                 desired instance (portal)
    <prefix>/observed/instances/<uuid>        what the node saw (the instance's agent)
    <prefix>/on/<node>/instances/<uuid>       a copy of the desired record, written in the
                                              same transaction (portal)
    <prefix>/on/<node>/observed/<uuid>        a copy of the observed record, likewise (the
                                              instance's agent)
    <prefix>/names/instances/<ns>/<name>      name -> uuid of instances made when names were
                                              unique (portal; removed with the instance)
    <prefix>/nodes/<node>                     capacity and facts (that node's agent)
    <prefix>/nodespecs/<node>                 a node's metadata (portal)
    <prefix>/alive/<node>                     heartbeat, on a lease (that node's agent)
    <prefix>/placement/<node>                 fence for scheduling onto a node (portal)
    <prefix>/maintenance/<node>               present while an operator keeps new
                                              instances off the node (portal)
    <prefix>/artifacts/<uuid>                 an image, snapshot, label or file, with its
                                              versions (portal)
    <prefix>/names/artifact-urls/<ns>/<type>/<sha256(url)>
                                              -> the namespace's one active artifact of that
                                              type and source URL (portal)
    <prefix>/blobs/<uuid>                     fixed bytes an artifact version holds (portal)
    <prefix>/observed/blobs/<node>/<uuid>     that node's copy of a blob (that node's agent)
    <prefix>/fences/blobs/<uuid>              rewritten by whatever starts using a blob, so
                                              a sweep that saw it unused can't miss that
    <prefix>/uploads/<uuid>                   bytes being uploaded to a node (portal)
    <prefix>/keypairs/<uuid>                  an ssh public key a namespace keeps (portal)
    <prefix>/names/keypairs/<ns>/<name>       name -> uuid (portal)
    <prefix>/consoles/tickets/<sha256>        a one-time console ticket, on a lease (portal)
    <prefix>/consoles/sessions/<id>           a live console, on a lease (the portal serving it)
    <prefix>/consoles/slots/<user>/<n>        one of a person's console slots (ditto)
    <prefix>/spent/<purpose>/<id>             a single-use token's id, once used, on a lease
                                              until the token expires (the portal that took it)
    <prefix>/access/<user>                    rewritten when what a person may do changed
                                              (any portal), so every portal process re-checks
                                              that person's open consoles and live pages
    <prefix>/jointokens/<id>                  a token a new machine joins the cloud with, and
                                              its join once used (portal; the deploy machine
                                              writes how the join went: cloudstate.jointokens)
    <prefix>/deploy/ssh-public-key            the deploy's SSH key, handed to joining machines
                                              (the deploy machine, `sfcloud-deploy accept-joins`)
    <prefix>/deploy/joining/<id>              token <id>'s join is being taken, on the taking
                                              acceptor's lease: gone with it, so another
                                              acceptor takes the join over (deploy.joins)
    <prefix>/quotas/limits/<ns>               a namespace's limits (portal; cloudstate.quotas)
    <prefix>/fences/quotas/<ns>               rewritten by every create that takes a limited
                                              kind, so two creates can't both take the last unit

Networks (see cloudstate.ipam for how reservations are made and released):

    <prefix>/networks/<uuid>                  desired network (portal)
    <prefix>/observed/networks/<uuid>         what the network node built (the network node)
    <prefix>/names/networks/<ns>/<name>       name -> uuid (portal)
    <prefix>/interfaces/<uuid>                an instance's NIC (portal; removed, with the
                                              reservations below, by the agent that tore
                                              down its instance)
    <prefix>/deleted/interfaces/<uuid>        what a torn-down instance's NIC was, so it
                                              stays readable while its instance is (that
                                              agent; forgotten with the instance)
    <prefix>/ipam/<network uuid>/<address>    an address reserved on a network
    <prefix>/ipam/floating/<address>          an address reserved from the floating pool
                                              (released by the network node once unused)
    <prefix>/vxlan/<id>                       a VXLAN id -> its network
    <prefix>/macs/<mac>                       a MAC address -> its interface
    <prefix>/fences/networks/<uuid>           rewritten by every attach to the network, so a
                                              delete that saw no users can't miss a new one
    <prefix>/roles/network-node               the node that holds the network node's role
    <prefix>/observed/interfaces/<uuid>       the filtering its hypervisor applied (the agent
                                              of its instance's node; released with it)

Security groups (see cloudstate.secgroups):

    <prefix>/secgroups/<uuid>                 a security group and its rules (portal)
    <prefix>/names/secgroups/<ns>/<name>      name -> uuid (portal)
    <prefix>/addrsets/<uuid>                  an address set (portal)
    <prefix>/names/addrsets/<ns>/<name>       name -> uuid (portal)
    <prefix>/quotas/secgroups/<ns>            rewritten by every create of a namespace's
                                              groups or address sets (and every use of one),
                                              so two creates can't both take the last place
                                              under the quota, nor a delete miss a new user;
                                              it lasts as long as the namespace's groups
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import NamedTuple

from cloudstate.vocabulary import ObjectKind

# The pool floating addresses are reserved in (network pools are named by uuid).
FLOATING_POOL = "floating"


@dataclass(frozen=True)
class Keys:
    prefix: str = "/sfcloud"

    def _k(self, *parts: str) -> str:
        return "/".join((self.prefix.rstrip("/"), *parts))

    @property
    def root(self) -> str:
        return self._k("")

    # instances
    @property
    def instances(self) -> str:
        return self._k("instances", "")

    def instance(self, uuid: str) -> str:
        return self._k("instances", uuid)

    @property
    def observed_instances(self) -> str:
        return self._k("observed", "instances", "")

    def observed_instance(self, uuid: str) -> str:
        return self._k("observed", "instances", uuid)

    # Each node's copies of its instances' records: an agent watches these
    # (nodeagent.scope), so what it holds does not grow with the cloud.
    @property
    def all_copies(self) -> str:
        return self._k("on", "")

    def node_copies(self, node: str) -> str:
        """Every copy kept for the node (forgotten with it)."""
        return self._k("on", node, "")

    def node_instances(self, node: str) -> str:
        return self._k("on", node, "instances", "")

    def node_instance(self, node: str, uuid: str) -> str:
        return self._k("on", node, "instances", uuid)

    def node_observed(self, node: str) -> str:
        return self._k("on", node, "observed", "")

    def node_observed_instance(self, node: str, uuid: str) -> str:
        return self._k("on", node, "observed", uuid)

    def instance_name(self, namespace: str, name: str) -> str:
        return self._k("names", "instances", namespace, name)

    def names(self, family: str) -> str:
        """Every name of a family of unique names (instances, networks, keypairs)."""
        return self._k("names", family, "")

    def fences(self, family: str) -> str:
        """Every fence of a family (networks, blobs)."""
        return self._k("fences", family, "")

    # nodes
    @property
    def nodes(self) -> str:
        return self._k("nodes", "")

    def node(self, name: str) -> str:
        return self._k("nodes", name)

    @property
    def node_specs(self) -> str:
        return self._k("nodespecs", "")

    def node_spec(self, name: str) -> str:
        return self._k("nodespecs", name)

    @property
    def alive(self) -> str:
        return self._k("alive", "")

    def node_alive(self, name: str) -> str:
        return self._k("alive", name)

    def placement(self, node: str) -> str:
        return self._k("placement", node)

    @property
    def join_tokens(self) -> str:
        return self._k("jointokens", "")

    def join_token(self, token_id: str) -> str:
        return self._k("jointokens", token_id)

    @property
    def deploy_ssh_key(self) -> str:
        return self._k("deploy", "ssh-public-key")

    @property
    def joins_taken(self) -> str:
        return self._k("deploy", "joining", "")

    def join_taken(self, token_id: str) -> str:
        return self._k("deploy", "joining", token_id)

    @property
    def maintenance_all(self) -> str:
        return self._k("maintenance", "")

    def maintenance(self, node: str) -> str:
        return self._k("maintenance", node)

    # artifacts, blobs, uploads
    @property
    def artifacts(self) -> str:
        return self._k("artifacts", "")

    def artifact(self, uuid: str) -> str:
        return self._k("artifacts", uuid)

    def artifact_url(self, namespace: str, type: str, url: str) -> str:
        digest = hashlib.sha256(url.encode()).hexdigest()
        return self._k("names", "artifact-urls", namespace, type, digest)

    @property
    def blobs(self) -> str:
        return self._k("blobs", "")

    def blob(self, uuid: str) -> str:
        return self._k("blobs", uuid)

    @property
    def observed_blobs(self) -> str:
        return self._k("observed", "blobs", "")

    def observed_blobs_of(self, node: str) -> str:
        return self._k("observed", "blobs", node, "")

    def observed_blob(self, node: str, uuid: str) -> str:
        return self._k("observed", "blobs", node, uuid)

    def blob_fence(self, uuid: str) -> str:
        return self._k("fences", "blobs", uuid)

    @property
    def uploads(self) -> str:
        return self._k("uploads", "")

    def upload(self, uuid: str) -> str:
        return self._k("uploads", uuid)

    # keypairs
    @property
    def keypairs(self) -> str:
        return self._k("keypairs", "")

    def keypair(self, uuid: str) -> str:
        return self._k("keypairs", uuid)

    def keypair_name(self, namespace: str, name: str) -> str:
        return self._k("names", "keypairs", namespace, name)

    # networks
    @property
    def networks(self) -> str:
        return self._k("networks", "")

    def network(self, uuid: str) -> str:
        return self._k("networks", uuid)

    @property
    def observed_networks(self) -> str:
        return self._k("observed", "networks", "")

    def observed_network(self, uuid: str) -> str:
        return self._k("observed", "networks", uuid)

    def network_name(self, namespace: str, name: str) -> str:
        return self._k("names", "networks", namespace, name)

    def network_fence(self, uuid: str) -> str:
        return self._k("fences", "networks", uuid)

    @property
    def interfaces(self) -> str:
        return self._k("interfaces", "")

    def interface(self, uuid: str) -> str:
        return self._k("interfaces", uuid)

    @property
    def deleted_interfaces(self) -> str:
        return self._k("deleted", "interfaces", "")

    def deleted_interface(self, uuid: str) -> str:
        return self._k("deleted", "interfaces", uuid)

    @property
    def ipam(self) -> str:
        return self._k("ipam", "")

    def addresses(self, pool: str) -> str:
        """Every reservation of one pool: a network's uuid, or FLOATING_POOL."""
        return self._k("ipam", pool, "")

    def address(self, pool: str, address: str) -> str:
        return self._k("ipam", pool, address)

    @property
    def vxlans(self) -> str:
        return self._k("vxlan", "")

    def vxlan(self, vxid: int) -> str:
        return self._k("vxlan", str(vxid))

    @property
    def macs(self) -> str:
        return self._k("macs", "")

    def mac(self, mac: str) -> str:
        return self._k("macs", mac.lower())

    @property
    def roles(self) -> str:
        return self._k("roles", "")

    @property
    def observed_interfaces(self) -> str:
        return self._k("observed", "interfaces", "")

    def observed_interface(self, uuid: str) -> str:
        return self._k("observed", "interfaces", uuid)

    @property
    def network_node_role(self) -> str:
        return self._k("roles", "network-node")

    # security groups
    @property
    def security_groups(self) -> str:
        return self._k("secgroups", "")

    def security_group(self, uuid: str) -> str:
        return self._k("secgroups", uuid)

    def security_group_name(self, namespace: str, name: str) -> str:
        return self._k("names", "secgroups", namespace, name)

    @property
    def address_sets(self) -> str:
        return self._k("addrsets", "")

    def address_set(self, uuid: str) -> str:
        return self._k("addrsets", uuid)

    def address_set_name(self, namespace: str, name: str) -> str:
        return self._k("names", "addrsets", namespace, name)

    def security_fence(self, namespace: str) -> str:
        return self._k("quotas", "secgroups", namespace)

    # consoles
    @property
    def console_tickets(self) -> str:
        return self._k("consoles", "tickets", "")

    def console_ticket(self, digest: str) -> str:
        return self._k("consoles", "tickets", digest)

    @property
    def console_sessions(self) -> str:
        return self._k("consoles", "sessions", "")

    def console_session(self, session_id: str) -> str:
        return self._k("consoles", "sessions", session_id)

    def console_slots(self, user_id: int) -> str:
        return self._k("consoles", "slots", str(user_id), "")

    def console_slot(self, user_id: int, slot: int) -> str:
        return self._k("consoles", "slots", str(user_id), str(slot))

    # single-use tokens
    def spent_token(self, purpose: str, token_id: str) -> str:
        return self._k("spent", purpose, token_id)

    # people
    @property
    def access_changes(self) -> str:
        return self._k("access", "")

    def access_change(self, user_id: int) -> str:
        return self._k("access", str(user_id))

    def user_of_access_change(self, key: str) -> int | None:
        """The person an ``access_change`` key is about, else None."""
        found = self.uuid_of(key, self.access_changes)
        return int(found) if found is not None and found.isascii() and found.isdigit() else None

    # quotas
    @property
    def quotas(self) -> str:
        return self._k("quotas", "limits", "")

    def quota(self, namespace: str) -> str:
        return self._k("quotas", "limits", namespace)

    def quota_fence(self, namespace: str) -> str:
        return self._k("fences", "quotas", namespace)

    # parsing
    def classify(self, key: str) -> Classified | None:
        """Which object a key holds a record of: (kind, uuid, observed), the
        uuid being a node's name for nodes and a session's id for consoles.
        ``observed`` tells an agent's report (and a node's liveness) from the
        desired record. None for keys that are not an object's own record
        (names, reservations, fences...)."""
        for family, kind, observed in self._families():
            if uuid := self.uuid_of(key, family):
                return Classified(kind, uuid, observed)
        if parts := self.observed_blob_parts(key):
            return Classified(ObjectKind.BLOB, parts[1], observed=True)
        return None

    def observed_blob_parts(self, key: str) -> tuple[str, str] | None:
        """(node, blob uuid) of an observed blob key, else None."""
        if not key.startswith(self.observed_blobs):
            return None
        node, _, uuid = key[len(self.observed_blobs):].partition("/")
        return (node, uuid) if node and uuid and "/" not in uuid else None

    def _families(self) -> tuple[tuple[str, ObjectKind, bool], ...]:
        # Labels are artifacts (of type label), so they classify as images.
        return (
            (self.instances, ObjectKind.INSTANCE, False),
            (self.observed_instances, ObjectKind.INSTANCE, True),
            (self.networks, ObjectKind.NETWORK, False),
            (self.observed_networks, ObjectKind.NETWORK, True),
            (self.interfaces, ObjectKind.INTERFACE, False),
            (self.observed_interfaces, ObjectKind.INTERFACE, True),
            (self.security_groups, ObjectKind.SECURITY_GROUP, False),
            (self.address_sets, ObjectKind.ADDRESS_SET, False),
            (self.artifacts, ObjectKind.IMAGE, False),
            (self.blobs, ObjectKind.BLOB, False),
            (self.uploads, ObjectKind.UPLOAD, False),
            (self.keypairs, ObjectKind.KEYPAIR, False),
            (self.nodes, ObjectKind.NODE, False),
            (self.node_specs, ObjectKind.NODE, False),
            (self.alive, ObjectKind.NODE, True),
            (self.console_sessions, ObjectKind.CONSOLE, False),
        )

    def uuid_of(self, key: str, family: str) -> str | None:
        """The last path element of ``key`` if it belongs to ``family`` (a
        prefix property such as ``keys.instances``), else None."""
        if not key.startswith(family):
            return None
        rest = key[len(family):]
        return rest if rest and "/" not in rest else None


class Classified(NamedTuple):
    """What ``Keys.classify`` found: the kind of object, its uuid (or name),
    and whether the key is the observed side of it."""

    kind: ObjectKind
    uuid: str
    observed: bool = False
