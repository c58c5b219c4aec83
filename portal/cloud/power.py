"""Power actions on an instance, as the API and the buttons ask for them.

What is possible depends on the instance's power state as libvirt last
reported it (cloudstate.power has the table). While the instance is not yet
built, or the agent has not yet applied the previous action, the answer is
406: Shaken Fist's client retries those, and a person sees "try again".
"""

from __future__ import annotations

from cloudstate import power
from cloudstate.validation import shown
from portal.accounts.actor import Actor
from portal.accounts.models import AuditAction
from portal.cloud import changes, instances
from portal.cloud.errors import BadRequest, Conflict, NotReady
from portal.cloud.instances import KIND, InstanceRecord

# The audit trail names power actions as the API's verbs do, whichever door.
_VERBS = {intent: verb for verb, intent in power.API_ACTIONS.items()}


def check(record: InstanceRecord, action: str) -> None:
    """Raise the error that ``action`` would get now, if any."""
    name = record.spec.name
    label = power.LABELS.get(action, action).lower()
    if action not in power.ALLOWED_FROM:
        raise BadRequest(f"{shown(action)} is not a power action")
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


def audit_action(action: str) -> str:
    """The audit trail's name for a power action (an intent such as "off")."""
    return AuditAction(_VERBS[action]) if action in _VERBS else action


async def request(actor: Actor, record: InstanceRecord, action: str) -> InstanceRecord:
    """Record the intent; the instance's agent applies it."""
    def change(current: InstanceRecord):  # type: ignore[no-untyped-def]
        check(current, action)
        return current.spec.replace(power=current.spec.power.replace(
            generation=current.spec.power.generation + 1, action=action))

    async with changes.changing(actor, audit_action(action), KIND,
                                namespace=record.spec.namespace, object_id=record.uuid,
                                object_name=record.spec.name):
        check(record, action)
        updated = await instances.update(record, change)
    await changes.event(actor, KIND, record.uuid,
                        f"{power.LABELS[action].lower()} requested",
                        operation=audit_action(action), action=action,
                        generation=updated.spec.power.generation)
    return updated
