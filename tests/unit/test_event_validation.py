from __future__ import annotations

import time

import pytest

from cloudstate.validation import ValidationError
from portal.events import log as eventlog


def good(**changes: object) -> dict:
    return {"id": "0123456789abcdef", "kind": "instance", "uuid": "u", "type": "mutate",
            "timestamp": time.time(), "message": "hello", "duration": 1.5, "extra": {"a": 1},
            **changes}


def test_an_agents_event_is_attributed_to_the_node_its_token_names() -> None:
    event = eventlog.from_agent(good(fqdn="somewhere-else"), node="node-a")
    assert event.fqdn == "node-a" and event.object_kind == "instance"
    assert event.as_api() == {"type": "mutate", "timestamp": event.timestamp, "fqdn": "node-a",
                              "duration": 1.5, "message": "hello", "extra": {"a": 1},
                              "operation": None}


@pytest.mark.parametrize("changes,field", [
    ({"id": "short"}, "event.id"), ({"kind": "planet"}, "event.kind"), ({"uuid": ""}, "uuid"),
    ({"type": "gossip"}, "event.type"), ({"timestamp": "now"}, "timestamp"),
    ({"timestamp": float("nan")}, "timestamp"), ({"duration": "long"}, "duration"),
    ({"message": None}, "message"), ({"extra": [1]}, "extra"),
    ({"extra": {"x": "y" * 20000}}, "extra"),
])
def test_malformed_events_are_refused(changes: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=field.replace(".", r"\.")):
        eventlog.from_agent(good(**changes), node="n")


@pytest.mark.parametrize("value,expected", [(None, 100), ("", 100), ("7", 7), (1000, 1000),
                                            (0, 0), (-1, None), ("-1", None)])
def test_limit(value: object, expected: int | None) -> None:
    # Shaken Fist's client sends -l as a string; a negative limit means every event.
    assert eventlog.parse_limit(value) == expected


def test_event_types_no_event_has_are_not_errors() -> None:
    assert eventlog.parse_type("resources") == "resources"
    assert eventlog.parse_type("no-such-type") == "no-such-type"
    with pytest.raises(ValidationError, match="event_type"):
        eventlog.parse_type(["audit"])


@pytest.mark.parametrize("value", [1001, "x", True, 2.5])
def test_bad_limit(value: object) -> None:
    with pytest.raises(ValidationError, match="limit"):
        eventlog.parse_limit(value)


def test_group_names_are_valid_for_any_object_name() -> None:
    name = eventlog.group_name("node", "a node/with:odd chars" * 10)
    assert len(name) < 100 and name.replace(".", "").replace("-", "").isalnum()
