"""The per-object event log: what happened to an instance, network, node or
image, when, where and how long it took, in Shaken Fist's shape.

Events are history, not state, so they live in the portal's database rather
than in etcd (which keeps only the present and must stay small). Agents
send theirs over an authenticated websocket; each carries an id the agent
chose, so an event sent twice (the acknowledgement was lost) is stored once.
"""

from __future__ import annotations

from django.db import models

from cloudstate.vocabulary import EVENT_KINDS, EventType

KINDS: tuple[str, ...] = tuple(kind.value for kind in EVENT_KINDS)
TYPES: tuple[str, ...] = tuple(kind.value for kind in EventType)


class Event(models.Model):
    event_id = models.CharField(max_length=64, unique=True)
    object_kind = models.CharField(max_length=16)
    object_uuid = models.CharField(max_length=255)
    type = models.CharField(max_length=16)
    timestamp = models.FloatField()  # seconds since the epoch, as the API shows it
    fqdn = models.CharField(max_length=255)  # where it happened: a node, or the portal
    duration = models.FloatField(null=True, blank=True)
    message = models.TextField()
    extra = models.JSONField(null=True, blank=True)
    # What someone asked for, for the events of a request (the audit
    # action: create, poweroff, snapshot...); empty for what a node saw.
    operation = models.CharField(max_length=40, blank=True, default="")

    class Meta:
        indexes = [
            models.Index(fields=["object_kind", "object_uuid", "-timestamp"],
                         name="event_object_newest"),
            models.Index(fields=["timestamp"], name="event_age"),
        ]

    def __str__(self) -> str:
        return f"{self.object_kind} {self.object_uuid}: {self.message}"

    def as_api(self) -> dict:
        return {
            "type": self.type,
            "timestamp": self.timestamp,
            "fqdn": self.fqdn,
            "duration": self.duration,
            "message": self.message,
            "extra": self.extra,
            # Shaken Fist's events had it until v0.7; scripts of that time read it.
            "operation": self.operation or None,
        }
