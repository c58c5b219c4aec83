"""The closed vocabularies shared by the portal and the node agents: the kinds
of object the cloud has, and the types of event an object's log holds.

They are string enums, so a member compares equal to (and serialises as) its
plain value: records, events and audit rows written before these existed read
the same.
"""

from __future__ import annotations

from enum import StrEnum


class ObjectKind(StrEnum):
    """What an etcd key, an event or an audit row is about."""

    INSTANCE = "instance"
    NETWORK = "network"
    INTERFACE = "interface"
    # An artifact (Shaken Fist's word): an image, snapshot, label or other file.
    IMAGE = "image"
    BLOB = "blob"  # an artifact version's bytes
    UPLOAD = "upload"
    KEYPAIR = "keypair"
    NODE = "node"
    CONSOLE = "console"  # a console session
    SECURITY_GROUP = "security-group"
    ADDRESS_SET = "address-set"
    # People and history, kept in the portal's database:
    NAMESPACE = "namespace"
    KEY = "key"  # a namespace's API key
    USER = "user"
    MEMBERSHIP = "membership"
    TOKEN = "token"  # noqa: S105 - a person's API token, as a kind of object
    SESSION = "session"  # a log-in


# The kinds that keep an event log (Shaken Fist's /<kind>s/<ref>/events).
EVENT_KINDS: tuple[ObjectKind, ...] = (
    ObjectKind.INSTANCE, ObjectKind.NETWORK, ObjectKind.NODE, ObjectKind.IMAGE,
    ObjectKind.BLOB, ObjectKind.SECURITY_GROUP, ObjectKind.ADDRESS_SET,
)


class EventType(StrEnum):
    """Shaken Fist's event types. We use audit (someone asked for something),
    mutate (something was changed), status (something was seen to change),
    and usage/resources where they fit."""

    AUDIT = "audit"
    MUTATE = "mutate"
    STATUS = "status"
    USAGE = "usage"
    RESOURCES = "resources"
    PRUNE = "prune"
    HISTORIC = "historic"
