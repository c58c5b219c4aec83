"""The instances placed on this node, as the sampler asks for them at every
sample: read from the agent's mirror of etcd, each record parsed once per
revision (a cloud of thousands of instances must not cost every node
thousands of parses every few seconds)."""

from __future__ import annotations

from cloudstate.keys import Keys
from cloudstate.mirror import MirrorView
from cloudstate.model import InstanceSpec


class PlacedInstances:
    def __init__(self, *, mirror: MirrorView, keys: Keys, node: str):
        self._mirror = mirror
        self._keys = keys
        self._node = node
        self._parsed: dict[str, tuple[int, InstanceSpec]] = {}

    def __call__(self) -> dict[str, InstanceSpec]:
        placed = {}
        seen = set()
        for kv in self._mirror.items(self._keys.instances):
            seen.add(kv.key)
            cached = self._parsed.get(kv.key)
            if cached is None or cached[0] != kv.mod_revision:
                cached = self._parsed[kv.key] = (kv.mod_revision, InstanceSpec.from_json(kv.value))
            spec = cached[1]
            if spec.node == self._node:
                placed[spec.uuid] = spec
        for gone in self._parsed.keys() - seen:
            del self._parsed[gone]
        return placed
