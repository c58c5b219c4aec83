"""Which power actions make sense in which power state, shared by the portal
(which refuses the others with 409) and the agent (which applies them).

A power action is recorded as an intent with a generation number; the agent
applies each generation once. The names here are the intents' own; the API
spells some of them the way Shaken Fist's URLs do (``poweron``).
"""

from __future__ import annotations

from cloudstate.validation import shown

# The API's verb (the last part of POST /instances/<ref>/<verb>) -> intent.
API_ACTIONS: dict[str, str] = {
    "poweron": "on",
    "poweroff": "off",
    "pause": "pause",
    "unpause": "unpause",
    "rebootsoft": "rebootsoft",
    "reboothard": "reboothard",
}

# Each action, the power states it may start from, and where it leads.
ALLOWED_FROM: dict[str, frozenset[str]] = {
    "on": frozenset({"off", "crashed"}),
    "off": frozenset({"on", "paused", "crashed"}),
    "pause": frozenset({"on"}),
    "unpause": frozenset({"paused"}),
    "rebootsoft": frozenset({"on"}),
    "reboothard": frozenset({"on", "paused", "crashed"}),
}
LEADS_TO: dict[str, str] = {
    "on": "on", "off": "off", "pause": "paused", "unpause": "on",
    "rebootsoft": "on", "reboothard": "on",
}

# How people read them: buttons, events, messages.
LABELS: dict[str, str] = {
    "on": "Power on", "off": "Power off", "pause": "Pause", "unpause": "Unpause",
    "rebootsoft": "Reboot", "reboothard": "Hard reboot",
}
_WHY_NOT = {
    ("on", "on"): "it is already on",
    ("on", "paused"): "it is paused: unpause it instead",
    ("off", "off"): "it is already off",
    ("pause", "paused"): "it is already paused",
    ("pause", "off"): "it is powered off",
    ("pause", "crashed"): "it has crashed: power it off or reboot it hard",
    ("unpause", "on"): "it is not paused",
    ("unpause", "off"): "it is powered off, not paused: power it on instead",
    ("unpause", "crashed"): "it is not paused",
    ("rebootsoft", "off"): "it is powered off: power it on instead",
    ("rebootsoft", "paused"): "it is paused: a soft reboot needs a running guest; "
                              "unpause it or reboot it hard",
    ("rebootsoft", "crashed"): "it has crashed: reboot it hard instead",
    ("reboothard", "off"): "it is powered off: power it on instead",
}


def refusal(action: str, power_state: str) -> str | None:
    """Why ``action`` can't be applied in ``power_state``, or None if it can."""
    if action not in ALLOWED_FROM:
        return f"{shown(action)} is not a power action"
    if power_state in ALLOWED_FROM[action]:
        return None
    return _WHY_NOT.get((action, power_state), f"its power state is {power_state}")


def available(power_state: str) -> list[str]:
    """The actions a person may pick now, in the order buttons show them."""
    order = ("unpause", "on", "pause", "rebootsoft", "reboothard", "off")
    return [action for action in order if power_state in ALLOWED_FROM[action]]
