"""The contract shared by the portal and the node agents.

Everything that both sides must agree on lives here and nowhere else: where
objects live in etcd (``keys``), what they look like (``model``), which state
changes are legal (``states``), what a valid name or size is (``validation``),
and the one way we talk to etcd (``etcd``, ``mirror``). This package never
imports Django or libvirt.
"""
