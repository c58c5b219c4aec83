"""How the state a user sees is derived from desired and observed state.

The portal writes what should be, the agent writes what is; the API never
stores a merged state, it computes it here, so the two can't disagree.
"""

from __future__ import annotations

from collections.abc import Mapping

from cloudstate.model import (
    InstanceObserved,
    InstanceSpec,
    InterfaceObserved,
    InterfaceSpec,
    NetworkObserved,
    NetworkSpec,
)

# The states Shaken Fist's client understands. It waits while an instance is
# "initial" or "creating", and a delete waits for exactly "deleted".
INITIAL = "initial"
CREATING = "creating"
CREATED = "created"
ERROR = "error"
DELETING = "deleting"
DELETED = "deleted"


def instance_state(spec: InstanceSpec, observed: InstanceObserved | None) -> str:
    if spec.desired == "deleted":
        return DELETED if observed is not None and observed.state == DELETED else DELETING
    if observed is None:
        return INITIAL
    return observed.state


# An instance whose node is offline: what it was last seen doing may no
# longer be true, so it is not shown ("on" would be stale).
UNREACHABLE = "unreachable"


def power_state(observed: InstanceObserved | None, *, node_online: bool = True) -> str:
    if not node_online and observed is not None and observed.state != "deleted":
        return UNREACHABLE
    return observed.power_state if observed is not None else "initial"


def is_active(spec: InstanceSpec) -> bool:
    """Counts against its node's capacity and its name is taken."""
    return spec.desired != "deleted"


# --- networks -------------------------------------------------------------------------
# Shaken Fist's network states; "delete-wait" means interfaces still use it.
DELETE_WAIT = "delete-wait"


def network_state(spec: NetworkSpec, observed: NetworkObserved | None, in_use: bool) -> str:
    if spec.desired == "deleted":
        if observed is not None and observed.state == DELETED:
            return DELETED
        return DELETE_WAIT if in_use else DELETING
    if observed is None:
        return INITIAL
    return observed.state


# --- an interface's filtering ----------------------------------------------------------
APPLIED = "applied"  # its hypervisor has its groups, as they are now, in force
PENDING = "pending"  # a change (or the interface itself) is on its way there
FILTERING_OFF = "off"  # port security is off, and off on the hypervisor too


def filtering_state(spec: InterfaceSpec, observed: InterfaceObserved | None,
                    generations: Mapping[str, int]) -> str:
    """applied, pending, error or off: whether what the interface asks for
    (its groups at their current ``generations``) is what its hypervisor
    reported in force."""
    if observed is not None and observed.state == ERROR:
        return ERROR
    if observed is None:
        return PENDING
    if not spec.port_security:
        return FILTERING_OFF if not observed.port_security else PENDING
    wanted = {uuid: generations[uuid] for uuid in spec.security_groups if uuid in generations}
    same = (observed.port_security and observed.groups == wanted
            and sorted(observed.allowed_addresses) == sorted(spec.allowed_addresses))
    return APPLIED if same else PENDING
