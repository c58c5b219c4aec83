from __future__ import annotations

import pytest

from cloudstate import power


@pytest.mark.parametrize("action,state,allowed", [
    ("on", "off", True), ("on", "crashed", True), ("on", "on", False), ("on", "paused", False),
    ("off", "on", True), ("off", "paused", True), ("off", "off", False),
    ("pause", "on", True), ("pause", "paused", False), ("pause", "off", False),
    ("unpause", "paused", True), ("unpause", "on", False),
    ("rebootsoft", "on", True), ("rebootsoft", "paused", False), ("rebootsoft", "off", False),
    ("reboothard", "on", True), ("reboothard", "paused", True), ("reboothard", "off", False),
])
def test_refusal_table(action: str, state: str, allowed: bool) -> None:
    assert (power.refusal(action, state) is None) is allowed


def test_every_refusal_says_why_and_buttons_match_the_table() -> None:
    for action in power.ALLOWED_FROM:
        for state in ("on", "off", "paused", "crashed"):
            why = power.refusal(action, state)
            assert why is None or len(why) > 8
            assert (action in power.available(state)) is (why is None)
    assert power.refusal("explode", "on") == '"explode" is not a power action'
    assert set(power.API_ACTIONS.values()) == set(power.ALLOWED_FROM) == set(power.LEADS_TO)
