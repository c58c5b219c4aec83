"""Many pages at once ask each node for its summary once (portal.cloud.usage)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from portal.cloud import usage


def test_recent_summaries_are_shared_then_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    async def get(node: str, path: str, params: Any = None) -> dict[str, Any]:
        asked.append(node)
        await asyncio.sleep(0.01)
        return {"node": {"cpu": 0.5}, "instances": {}}

    monkeypatch.setattr(usage, "_get", get)

    async def pages() -> None:
        # Fifty lists at once, showing rows of the same two nodes.
        found = await asyncio.gather(*(usage.summaries(["a", "b", "a"]) for _ in range(50)))
        assert all(set(one) == {"a", "b"} for one in found)
        assert sorted(asked) == ["a", "b"]
        monkeypatch.setattr(usage, "SUMMARY_FRESH", 0.0)
        await asyncio.sleep(0.01)
        await usage.summaries(["a"])
        assert sorted(asked) == ["a", "a", "b"]

    asyncio.run(pages())
