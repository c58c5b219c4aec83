"""Failpoints (nodeagent.failpoints): what SFCLOUD_FAILPOINTS may say."""

from __future__ import annotations

import pytest

from nodeagent import failpoints


def test_names_and_actions_are_read() -> None:
    armed = failpoints.parse(["after-define", "mid-download:sleep=1.5", "mid-teardown:exit"])
    assert armed == {"after-define": failpoints.Action(),
                     "mid-download": failpoints.Action(sleep=1.5),
                     "mid-teardown": failpoints.Action()}


@pytest.mark.parametrize("word,words", [
    ("after-nothing", "no failpoint named"),
    ("mid-download:sleep=soon", "say exit or sleep"),
    ("mid-download:explode", "say exit or sleep"),
])
def test_a_wrong_failpoint_is_refused_naming_it(word: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        failpoints.parse([word])


def test_every_point_hit_in_the_code_is_listed() -> None:
    """A point the code hits but POINTS does not list could never be armed."""
    import re
    from pathlib import Path

    root = Path(failpoints.__file__).parent
    hit = {name for path in root.rglob("*.py")
           for name in re.findall(r'failpoints\.hit\("([\w-]+)"\)', path.read_text())}
    assert hit == set(failpoints.POINTS)
