"""Where every object lives in etcd.

One writer per key family, so no two processes ever race on a key:

    <prefix>/instances/<uuid>                 desired instance (portal)
    <prefix>/observed/instances/<uuid>        what the node saw (the instance's agent)
    <prefix>/names/instances/<ns>/<name>      name -> uuid, unique per namespace (portal)
    <prefix>/nodes/<node>                     capacity and facts (that node's agent)
    <prefix>/alive/<node>                     heartbeat, on a lease (that node's agent)
    <prefix>/placement/<node>                 fence for scheduling onto a node (portal)
    <prefix>/images/<uuid>                    an image that instances may boot from (portal)
    <prefix>/names/images/<ns>/<name>         name -> uuid (portal)
    <prefix>/observed/images/<node>/<uuid>    that node's cache of an image (that node's agent)
    <prefix>/keypairs/<uuid>                  an ssh public key a namespace keeps (portal)
    <prefix>/names/keypairs/<ns>/<name>       name -> uuid (portal)
"""

from __future__ import annotations

from dataclasses import dataclass


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

    def instance_name(self, namespace: str, name: str) -> str:
        return self._k("names", "instances", namespace, name)

    # nodes
    @property
    def nodes(self) -> str:
        return self._k("nodes", "")

    def node(self, name: str) -> str:
        return self._k("nodes", name)

    @property
    def alive(self) -> str:
        return self._k("alive", "")

    def node_alive(self, name: str) -> str:
        return self._k("alive", name)

    def placement(self, node: str) -> str:
        return self._k("placement", node)

    # images
    @property
    def images(self) -> str:
        return self._k("images", "")

    def image(self, uuid: str) -> str:
        return self._k("images", uuid)

    def image_name(self, namespace: str, name: str) -> str:
        return self._k("names", "images", namespace, name)

    @property
    def observed_images(self) -> str:
        return self._k("observed", "images", "")

    def observed_image(self, node: str, uuid: str) -> str:
        return self._k("observed", "images", node, uuid)

    # keypairs
    @property
    def keypairs(self) -> str:
        return self._k("keypairs", "")

    def keypair(self, uuid: str) -> str:
        return self._k("keypairs", uuid)

    def keypair_name(self, namespace: str, name: str) -> str:
        return self._k("names", "keypairs", namespace, name)

    # parsing
    def uuid_of(self, key: str, family: str) -> str | None:
        """The last path element of ``key`` if it belongs to ``family`` (a
        prefix property such as ``keys.instances``), else None."""
        if not key.startswith(family):
            return None
        rest = key[len(family):]
        return rest if rest and "/" not in rest else None
