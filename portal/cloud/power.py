"""Power actions on an instance, as the API and the buttons ask for them.

What is possible depends on the instance's power state as libvirt last
reported it (cloudstate.power has the table). While the instance is not yet
built, or the agent has not yet applied the previous action, the answer is
406: Shaken Fist's client retries those, and a person sees "try again".
"""

from __future__ import annotations

from cloudstate import power
from portal.cloud import instances
from portal.cloud.errors import BadRequest, Conflict, NotReady
from portal.cloud.instances import InstanceRecord
from portal.events import log as eventlog


def check(record: InstanceRecord, action: str) -> None:
    """Raise the error that ``action`` would get now, if any."""
    name = record.spec.name
    label = power.LABELS.get(action, action).lower()
    if action not in power.ALLOWED_FROM:
        raise BadRequest(f"{action!r} is not a power action")
    if record.state in ("deleting", "deleted"):
        raise Conflict(f"cannot {label} instance {name}: it is being deleted")
    if record.state == "error":
        raise Conflict(f"cannot {label} instance {name}: it is in error ({record.error})")
    if record.state != "created":
        raise NotReady(f"instance {name} is not created yet (it is {record.state}); "
                       "try again in a moment")
    observed = record.observed
    if observed is not None and observed.applied_power_generation < record.spec.power.generation:
        raise NotReady(f"instance {name} is still applying the previous power action "
                       f"({power.LABELS.get(record.spec.power.action, '?').lower()}); "
                       "try again in a moment")
    why = power.refusal(action, record.power_state)
    if why:
        raise Conflict(f"cannot {label} instance {name}: {why}")


async def request(record: InstanceRecord, action: str, actor: str | None = None
                  ) -> InstanceRecord:
    """Record the intent; the instance's agent applies it."""
    def change(current: InstanceRecord):  # type: ignore[no-untyped-def]
        check(current, action)
        return current.spec.replace(power=current.spec.power.replace(
            generation=current.spec.power.generation + 1, action=action))

    check(record, action)
    updated = await instances.update(record, change)
    who = f" by {actor}" if actor else ""
    await eventlog.record("instance", record.uuid,
                          f"{power.LABELS[action].lower()} requested{who}",
                          extra={"action": action, "actor": actor,
                                 "generation": updated.spec.power.generation})
    return updated
